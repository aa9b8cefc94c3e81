r"""Is the input pipeline fast enough to feed the DCGAN-64 train step?

  python benchmarks/input_pipeline.py            # batch 64, 64x64x3, Radford DCGAN width 64
  python benchmarks/input_pipeline.py --tiny     # CI smoke test: seconds

Measures images per second of

1. the pipeline alone on a synthetic in-memory `ArraySource` of uint8 images of
   the training shape (shuffle + batch + uint8 -> float32 in [-1, 1], via
   grain, exactly `jaxgan.data.images.make_iterator`);
2. the pipeline alone on a mocked CelebA (`tfds.testing.mock_data`: random
   218x178x3 images served by `tfds.data_source`, then the celeb_a preset's
   108-px center crop and bilinear resize to the training size, per image with
   Pillow). The mock serves decoded arrays, so JPEG decoding is NOT included;
3. the DCGAN train step alone (`jaxgan.families.gan.train_step`: one D and one G
   update, non-saturating loss, Adam) on one device-resident batch;
4. the two together: ``next(batches)`` -> `parallel.put_batch` -> train step,
   as `jaxgan.trainer.fit` does it (no overlap beyond grain's own prefetch
   threads and JAX's asynchronous dispatch).

The pipeline keeps up when (1)/(2) are well above (3); (4) close to (3) means
the input costs nothing in the loop. Prints a markdown table (and JSON with
--json_out).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time

import jax
import numpy as np
import optax  # noqa: E402  (after jax, as everywhere in jaxgan)
from absl import logging

from jaxgan import parallel
from jaxgan.data import images as images_lib
from jaxgan.families import gan
from jaxgan.models import dcgan
from jaxgan.state import create_gan_state

SIZES = {
  "full": dict(
    batch_size=64, image_size=64, channels=3, width=64, num_images=1024, batches=100, steps=10, warmup=2
  ),  # on a CPU pass e.g. --steps=3 (a step takes seconds there)
  "tiny": dict(batch_size=8, image_size=8, channels=3, width=4, num_images=64, batches=10, steps=3, warmup=1),
}


def _rate(fn, n: int, warmup: int) -> float:
  """Seconds per call of ``fn`` over ``n`` calls after ``warmup`` calls."""
  for _ in range(warmup):
    fn()
  start = time.perf_counter()
  for _ in range(n):
    fn()
  return (time.perf_counter() - start) / n


def pipeline_synthetic(cfg: dict) -> float:
  rng = np.random.default_rng(0)
  shape = (cfg["num_images"], cfg["image_size"], cfg["image_size"], cfg["channels"])
  source = images_lib.ArraySource("synthetic", rng.integers(0, 256, shape, dtype=np.uint8))
  it = images_lib.make_iterator(source, cfg["batch_size"], seed=0, n_critic=1)
  try:
    return _rate(lambda: next(it), cfg["batches"], cfg["warmup"])
  finally:
    it.close()


def pipeline_mock_celeb_a(cfg: dict) -> float:
  import tensorflow_datasets as tfds

  with tempfile.TemporaryDirectory() as data_dir, tfds.testing.mock_data(num_examples=cfg["num_images"]):
    source = images_lib.make_source("celeb_a", data_dir=data_dir, image_size=cfg["image_size"])
    it = images_lib.make_iterator(source, cfg["batch_size"], seed=0, n_critic=1)
    try:
      return _rate(lambda: next(it), max(cfg["batches"] // 4, 2), cfg["warmup"])
    finally:
      it.close()


def make_step(cfg: dict):
  gen = dcgan.DCGANGenerator(image_size=cfg["image_size"], channels=cfg["channels"], width=cfg["width"])
  disc = dcgan.DCGANDiscriminator(image_size=cfg["image_size"], width=cfg["width"])
  tx = optax.adam(2e-4, b1=0.5, b2=0.999)
  shape = (cfg["image_size"], cfg["image_size"], cfg["channels"])
  state = create_gan_state(
    seed=0, generator=gen, discriminator=disc, g_tx=tx, d_tx=tx, latent_dim=100, data_shape=shape
  )
  mesh = parallel.make_data_mesh(1)
  config = gan.Config(loss="non_saturating", latent_dim=100)
  step = parallel.compile_step(functools.partial(gan.train_step, config=config), mesh=mesh)
  return parallel.put_replicated(state, mesh), step, mesh


def train_step_alone(cfg: dict, state, step, mesh) -> tuple[float, float, object]:
  batch = {"x": np.zeros((1, cfg["batch_size"], cfg["image_size"], cfg["image_size"], cfg["channels"]), np.float32)}
  batch = parallel.put_batch(batch, mesh, 1)
  holder = [state]

  def run():
    holder[0], metrics = step(holder[0], batch)
    jax.block_until_ready(metrics)

  start = time.perf_counter()
  run()
  compile_s = time.perf_counter() - start
  return _rate(run, cfg["steps"], cfg["warmup"]), compile_s, holder[0]


def step_with_pipeline(cfg: dict, state, step, mesh) -> float:
  rng = np.random.default_rng(0)
  shape = (cfg["num_images"], cfg["image_size"], cfg["image_size"], cfg["channels"])
  source = images_lib.ArraySource("synthetic", rng.integers(0, 256, shape, dtype=np.uint8))
  it = images_lib.make_iterator(source, cfg["batch_size"], seed=0, n_critic=1)
  holder = [state]

  def run():
    batch = parallel.put_batch({"x": next(it)["image"]}, mesh, 1)
    holder[0], metrics = step(holder[0], batch)
    jax.block_until_ready(metrics)

  try:
    return _rate(run, cfg["steps"], cfg["warmup"])
  finally:
    it.close()


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--tiny", action="store_true", help="CI smoke-test sizes (seconds)")
  for name in ("batch_size", "image_size", "channels", "width", "batches", "steps", "warmup"):
    p.add_argument(f"--{name}", type=int, default=None)
  p.add_argument("--json_out", default=None)
  args = p.parse_args()
  logging.set_verbosity(logging.ERROR)  # TFDS warns that the mocked celeb_a has no dataset_info.json
  cfg = dict(SIZES["tiny" if args.tiny else "full"])
  for name in ("batch_size", "image_size", "channels", "width", "batches", "steps", "warmup"):
    if getattr(args, name) is not None:
      if getattr(args, name) < (0 if name == "warmup" else 1):
        sys.exit(f"error: --{name} must be >= 1")
      cfg[name] = getattr(args, name)
  b, s, c = cfg["batch_size"], cfg["image_size"], cfg["channels"]
  shape = f"{b}x{s}x{s}x{c}"
  device = jax.devices()[0]
  print(
    f"device: {device.platform} {device.device_kind}, {os.cpu_count()} host CPUs, jax {jax.__version__}, "
    f"python {platform.python_version()}; sizes {cfg}",
    flush=True,
  )
  print("| what | batch | ms / batch | images / s |")
  print("|---|---|---|---|", flush=True)
  rows = []

  def row(what, sec):
    rows.append((what, shape, sec))
    rate = b / sec
    print(
      f"| {what} | {shape} | {1e3 * sec:,.1f} | {rate:,.0f} |"
      if rate >= 100
      else f"| {what} | {shape} | {1e3 * sec:,.1f} | {rate:.2f} |",
      flush=True,
    )

  row("pipeline alone: synthetic ArraySource (uint8 -> float32)", pipeline_synthetic(cfg))
  row(f"pipeline alone: mock celeb_a 218x178 -> crop 108 -> resize {s}", pipeline_mock_celeb_a(cfg))
  state, step, mesh = make_step(cfg)
  t, compile_s, state = train_step_alone(cfg, state, step, mesh)
  row(f"DCGAN train step alone (width {cfg['width']}, 1 D + 1 G update)", t)
  row("train step fed by the synthetic pipeline", step_with_pipeline(cfg, state, step, mesh))
  print(f"train step compile (first call): {compile_s:.1f} s")
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump(
        {
          "config": cfg,
          "device": str(device),
          "compile_s": compile_s,
          "rows": [{"what": w, "batch": shp, "sec_per_batch": sec, "images_per_s": b / sec} for w, shp, sec in rows],
        },
        f,
        indent=2,
      )


if __name__ == "__main__":
  main()
