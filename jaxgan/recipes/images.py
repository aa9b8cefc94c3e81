"""The image-GAN recipes ``gan`` and ``dcgan`` (experiments/gan.py, dcgan.py): their objects from a run's flags.

* `build(cfg)` -- the run's `jaxgan.runs.Setup`: the image source (checked
  against the model's image shape BEFORE anything is trained or written: one
  error naming both shapes and the flag to change), generator and
  discriminator from the registries (`jaxgan.models.mlp`,
  `jaxgan.models.dcgan`) with their widths and image geometry, Adam and its
  schedule, the `jaxgan.families.gan.Config`, the (jitted) initial state and
  the training stream.
* `ImageBatches`: the adapter from the image iterator's ``{"image", "label"}``
  batches to the GAN family's ``{"x"}`` batches (keeps get/set_state).
* `SampleWriter`: the trainer's sample hook -- a sample grid from a FIXED z,
  the real-vs-fake pixel histogram and the loss curves.
* `sampling_state`, `pixel_report`: the state to sample with (BatchNorm
  statistics re-measured for the EMA parameters) and the pixel-space numbers
  written to eval.json at the end of a run.

Every function takes a plain ``cfg`` dict of flag values (the flags during
training, ``flags.json`` afterwards).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxgan import runs, sampling, trainer, viz
from jaxgan.data import images as images_lib
from jaxgan.errors import ConfigError
from jaxgan.families import gan
from jaxgan.metrics import frechet, prdc
from jaxgan.models import dcgan, mlp, sngan
from jaxgan.models.dcgan import radford_num_stages
from jaxgan.recipes import gan_settings
from jaxgan.state import GANState

GENERATORS = {"mlp": mlp.MLPGenerator, **dcgan.GENERATORS, **sngan.GENERATORS}
DISCRIMINATORS = {
  "mlp": mlp.MLPDiscriminator,
  "mlp_maxout": mlp.MaxoutDiscriminator,
  **dcgan.DISCRIMINATORS,
  **sngan.DISCRIMINATORS,
}

# How many numbers --g_widths / --d_widths take for each model, and what they mean.
G_WIDTHS = {
  "mlp": (None, "hidden layer widths, any number (default 1200,1200)"),
  "dcgan_mnist": (3, "dense width, projection channels, conv channels (default 512,128,64)"),
  "dcgan": (1, "channels of the last hidden layer, doubled towards z (default 64)"),
  "sngan": (1, "channels of the residual blocks (default 256 at 32 px; 512, halved per block, at 48 px)"),
}
D_WIDTHS = {
  "mlp": (None, "hidden layer widths, any number (default 512,256)"),
  "mlp_maxout": (None, "maxout units per layer, any number (default 240,240)"),
  "dcgan_mnist": (3, "two conv widths and the dense width (default 256,512,256)"),
  "dcgan": (1, "channels of the first conv, doubled per stage (default 64)"),
  "sngan": (1, "channels of the residual blocks (default 128 at 32 px; 64, doubled per block, at 48 px)"),
}

SAMPLES_DIR = "samples"
FIXED_Z_TAG = 0x5A3D  # fold_in tags: the grid's fixed z, the evaluation z, the standing statistics.
EVAL_Z_TAG = 0xE7A1
BN_STATS_TAG = 0xB57A


# ---------------------------------------------------------------------------- data


def _shape_str(shape) -> str:
  return "x".join(str(s) for s in shape)


def _one_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def _quietly(fn, *args, **kwargs):
  """Calls ``fn`` with absl logging at ERROR: TFDS logs INFO/WARNING lines while probing a name,
  which would bury the one-line error of a bad --dataset."""
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    return fn(*args, **kwargs)
  finally:
    logging.set_verbosity(level)


def open_dataset(
  cfg: Mapping[str, Any], split: str | None = None
) -> tuple[images_lib.ImageSource, tuple[int, int, int]]:
  """The run's image source and the model image shape (H, W, C).

  The model shape is (--image_size, --image_size, --channels), each 0 meaning
  "the data's". If it differs from the data's shape the run stops here, before
  training, unless --convert_data asks for the images to be resized (center
  crop to a square, bilinear) and their channels converted.

  An image folder of mixed sizes has no size of its own: with --image_size
  every image is resized to it at load (same rule; no --convert_data needed,
  which still governs --channels), without it the run stops with the
  `jaxgan.data.sources.MixedImageSizesError` naming two files.

  Raises:
    DataError: the dataset cannot be opened (unknown name, not prepared,
      empty image folder, mixed-size image folder without --image_size, ...).
    ConfigError: the data and model shapes differ.
  """
  name, data_dir = cfg["dataset"], cfg.get("data_dir")
  split = split or cfg.get("split", "train")
  if os.sep in name and not os.path.exists(name):
    raise images_lib.DataError(
      f"--dataset={name}: no such file or directory (a path must be an image folder or a .npz file)"
    )
  size, channels = int(cfg.get("image_size") or 0), int(cfg.get("channels") or 0)
  try:
    source = _quietly(images_lib.make_source, name, split=split, data_dir=data_dir)
  except images_lib.MixedImageSizesError:
    if not size:
      raise
    source = _quietly(images_lib.make_source, name, split=split, data_dir=data_dir, image_size=size)
  h, w, c = source.images_shape
  if channels not in (0, 1, 3):
    raise ConfigError(f"--channels={channels}: use 1 (grayscale) or 3 (RGB)")
  model = (size or h, size or w, channels or c)
  if model == (h, w, c):
    return source, model
  if not cfg.get("convert_data"):
    fixes = []
    if model[:2] != (h, w):
      fixes.append(f"--image_size={h}" if h == w else "--image_size=N with --convert_data")
    if model[2] != c:
      fixes.append(f"--channels={c}")
    raise ConfigError(
      f"dataset {name} has {_shape_str((h, w, c))} images ({'RGB' if c == 3 else 'grayscale'}) but the "
      f"model is {_shape_str(model)} ({'RGB' if model[2] == 3 else 'grayscale'}): set "
      f"{' '.join(fixes)} to match the data, or pass --convert_data to resize/convert the images"
    )
  source = _quietly(
    images_lib.make_source,
    name,
    split=split,
    data_dir=data_dir,
    image_size=size or None,
    channels=model[2],
    convert_channels=True,
  )
  if source.images_shape != model:
    raise ConfigError(
      f"dataset {name} gives {_shape_str(source.images_shape)} images after conversion "
      f"but the model is {_shape_str(model)}: pass a square --image_size"
    )
  return source, model


class ImageBatches:
  """Adapter: ``{"image", "label"}`` batches -> the ``{"x"[, "label"]}`` batches of `jaxgan.steps`.

  Labels are dropped unless ``keep_labels`` (unconditional models ignore
  them). ``get_state`` / ``set_state`` pass through, so the trainer still
  checkpoints and resumes the data position.
  """

  def __init__(self, iterator, keep_labels: bool = False):
    self._it, self._keep_labels = iterator, keep_labels

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._it)
    out = {"x": batch["image"]}
    if self._keep_labels and "label" in batch:
      out["label"] = batch["label"]
    return out

  def get_state(self) -> dict:
    return self._it.get_state()

  def set_state(self, state: dict) -> None:
    self._it.set_state(state)

  def close(self) -> None:
    if hasattr(self._it, "close"):
      self._it.close()


def make_batches(source: images_lib.ImageSource, cfg: Mapping[str, Any], keep_labels: bool = False) -> ImageBatches:
  """The training stream: this process's rows of every batch, shuffled by --seed, a leading n_critic axis,
  "image" renamed "x" (and the labels kept for a conditional model)."""
  per_process = cfg["batch_size"] // jax.process_count()
  iterator = images_lib.make_iterator(source, per_process, cfg["seed"], n_critic=cfg["n_critic"])
  return ImageBatches(iterator, keep_labels=keep_labels)


def reference_images(
  source: images_lib.ImageSource, n: int, seed: int, offset: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
  """``n`` real images in [-1, 1] (and labels), a fixed random subset given ``seed``.

  ``offset`` skips the first examples of the same permutation, so
  ``offset=n`` gives a disjoint held-out set of the same size.
  """
  order = np.random.default_rng([seed, EVAL_Z_TAG]).permutation(len(source))[offset : offset + n]
  examples = [source[int(i)] for i in order]
  images = np.stack([e["image"] for e in examples]).astype(np.float32) / np.float32(127.5) - 1.0
  labels = np.array([e["label"] for e in examples]) if examples and "label" in examples[0] else None
  return images, labels


# ---------------------------------------------------------------------------- models


def _widths(cfg: Mapping[str, Any], table: dict, name: str, flag: str) -> list[int]:
  count, meaning = table[name]
  return list(runs.widths(cfg, flag, count, f"{name}: {meaning}"))


def build_models(cfg: Mapping[str, Any], image_shape: tuple[int, int, int]):
  """Generator and discriminator modules for ``image_shape`` (H, W, C) from the registries.

  Raises ConfigError when a model cannot produce / read that geometry (e.g.
  the DCGANs need square images of base * 2^n pixels, the seed's MNIST DCGAN
  a multiple of 4).
  """
  g_name, d_name = cfg["generator"], cfg["discriminator"]
  if g_name not in GENERATORS or d_name not in DISCRIMINATORS:
    raise ConfigError(
      f"unknown model {g_name!r}/{d_name!r}: generators {', '.join(GENERATORS)}; "
      f"discriminators {', '.join(DISCRIMINATORS)}"
    )
  d_batchnorm = bool(cfg.get("d_batchnorm", True))
  if not d_batchnorm and d_name != "dcgan":
    raise ConfigError(f"--nod_batchnorm removes the BatchNorm of --discriminator=dcgan; {d_name} has none to remove")
  h, w, c = image_shape
  gw = _widths(cfg, G_WIDTHS, g_name, "g_widths")
  dw = _widths(cfg, D_WIDTHS, d_name, "d_widths")
  needs_square = [n for n in (g_name, d_name) if n.startswith(("dcgan", "sngan"))]
  if needs_square and h != w:
    raise ConfigError(
      f"{needs_square[0]} needs square images, the data is {_shape_str(image_shape)}: "
      "pass --image_size=N --convert_data"
    )
  try:
    if "dcgan" in (g_name, d_name):
      radford_num_stages(h)
    if "dcgan_mnist" in (g_name, d_name) and h % 4:
      raise ValueError(f"dcgan_mnist needs an image size divisible by 4, got {h}")
    if "sngan" in (g_name, d_name) and h % 8:
      raise ValueError(f"the SNGAN ResNets need an image size divisible by 8 (32, 48), got {h}")
  except ValueError as e:
    raise ConfigError(
      f"image size {h} does not suit {g_name}/{d_name} ({e}): choose another --image_size with --convert_data"
    ) from None

  if g_name == "mlp":
    gen = mlp.MLPGenerator(image_shape=(h, w, c), **({"hidden": tuple(gw)} if gw else {}))
  elif g_name == "dcgan_mnist":
    extra = dict(zip(("hidden", "base_channels", "mid_channels"), gw))
    gen = dcgan.MnistDCGANGenerator(image_size=h, channels=c, **extra)
  elif g_name == "sngan":
    gen = sngan.SNGANGenerator(image_size=h, channels=c, **({"width": gw[0]} if gw else {}))
  else:
    gen = dcgan.DCGANGenerator(image_size=h, channels=c, **({"width": gw[0]} if gw else {}))
  if d_name == "mlp":
    disc = mlp.MLPDiscriminator(**({"hidden": tuple(dw)} if dw else {}))
  elif d_name == "mlp_maxout":
    disc = mlp.MaxoutDiscriminator(**({"units": tuple(dw)} if dw else {}))
  elif d_name == "dcgan_mnist":
    disc = dcgan.MnistDCGANDiscriminator(**({"conv_channels": tuple(dw[:2]), "hidden": dw[2]} if dw else {}))
  elif d_name == "sngan":
    disc = sngan.SNGANDiscriminator(image_size=h, **({"width": dw[0]} if dw else {}))
  else:
    disc = dcgan.DCGANDiscriminator(image_size=h, use_batchnorm=d_batchnorm, **({"width": dw[0]} if dw else {}))
  disc = gan_settings.discriminator(cfg, disc)

  # Shape check by tracing only (nothing is computed): G must produce the data's shape.
  z = jax.ShapeDtypeStruct((2, int(cfg["latent_dim"])), jnp.float32)
  x = jax.ShapeDtypeStruct((2, h, w, c), jnp.float32)
  try:
    out, _ = jax.eval_shape(lambda z_: gen.init_with_output(jax.random.PRNGKey(0), z_, train=False), z)
    logits, _ = jax.eval_shape(lambda x_: disc.init_with_output(jax.random.PRNGKey(0), x_, train=False), x)
  except ValueError as e:
    raise ConfigError(f"{g_name}/{d_name} cannot handle {_shape_str(image_shape)} images: {_one_line(e)}") from None
  if tuple(out.shape[1:]) != (h, w, c) or tuple(logits.shape) != (2,):
    raise ConfigError(
      f"generator {g_name} makes {_shape_str(out.shape[1:])} images but the data is "
      f"{_shape_str(image_shape)}: check --image_size/--channels"
    )
  return gen, disc


def build(cfg: Mapping[str, Any], experiment: str) -> runs.Setup:
  """The `jaxgan.runs.Setup` of a gan.py / dcgan.py run (``experiment`` is "gan" or "dcgan").

  Everything that can be wrong with the input (dataset, shapes, widths) is a
  one-line error here, before anything is written.
  """
  runs.require(cfg, "dataset", "generator", "discriminator", "g_widths", "d_widths", "latent_dim", "seed")
  source, image_shape = open_dataset(cfg)
  gen, disc = build_models(cfg, image_shape)
  config = gan_settings.config(cfg)
  g_tx, d_tx = gan_settings.optimizers(cfg)

  def init_one(seed):
    # One compiled program instead of one per initialiser op (much faster on CPU).
    nets = dict(generator=gen, discriminator=disc, g_tx=g_tx, d_tx=d_tx, data_shape=image_shape)
    return jax.jit(lambda: gan.init_state(config, seed=seed, **nets))()

  info = {"source": source, "image_shape": tuple(image_shape), "num_classes": source.num_classes}
  seeds, data = (int(cfg["seed"]),), lambda: make_batches(source, cfg)
  return runs.Setup(experiment, "image", gan, dict(cfg), config, seeds, init_one, data, batch_axis=1, info=info)


# ---------------------------------------------------------------------------- sampling


def sampling_state(state: GANState, config: gan.Config, seed: int) -> GANState:
  """The state to draw figures with: EMA parameters with their own BatchNorm statistics."""
  return gan.standing_batch_stats(state, config, jax.random.fold_in(jax.random.PRNGKey(seed), BN_STATS_TAG))


class SampleWriter:
  """The trainer's sample hook: grid from a fixed z, pixel histogram, loss curves.

  Every call writes ``samples/step_NNNNNNN.png`` (the same grid_size^2 z at
  every step, so the grids show one set of samples evolving; with EMA also
  ``..._raw.png`` from the raw generator), ``samples/pixels_step_NNNNNNN.png``
  (real vs generated pixel histograms) and ``loss_curves.png``; the first
  call also writes ``samples/real.png``, real images at the same scale.
  The grids are `jaxgan.viz.grid_figure`s titled with the run, the step and
  the generator (EMA or raw); a call returns the paths it wrote.
  """

  def __init__(self, workdir: str, name: str, cfg: Mapping[str, Any], config: gan.Config, real: np.ndarray):
    self.workdir, self.name, self.cfg, self.config, self.real = workdir, name, cfg, config, real
    self.grid_z = sampling.latents(cfg["seed"], FIXED_Z_TAG, cfg["grid_size"] ** 2, config)
    self.eval_z = sampling.latents(cfg["seed"], EVAL_Z_TAG, len(real), config)
    self.scale = max(1, 512 // (cfg["grid_size"] * (real.shape[1] + 1)))

  def __call__(self, state: GANState, step: int) -> list[str]:
    """Writes the figures of ``step``; returns the paths of the PNGs written."""
    st = sampling_state(state, self.config, self.cfg["seed"])
    samples = os.path.join(self.workdir, SAMPLES_DIR)
    rows, run = self.cfg["grid_size"], f"{self.name} {self.cfg['dataset']}"
    ema = st.ema_params is not None
    fixed_z, written = f"{run}\nthe same {rows**2} z at every step", []
    real_grid = os.path.join(samples, "real.png")
    if not os.path.exists(real_grid):
      title = f"real {self.cfg['dataset']} images (training data)"
      written.append(viz.save_grid_figure(real_grid, self.real[: rows**2], rows, scale=self.scale, title=title))
    grid = sampling.generate(st, self.grid_z)
    written.append(
      viz.save_grid_figure(
        os.path.join(samples, f"step_{step:07d}.png"), grid, rows, scale=self.scale, title=fixed_z, step=step, ema=ema
      )
    )
    if ema:
      written.append(
        viz.save_grid_figure(
          os.path.join(samples, f"step_{step:07d}_raw.png"),
          sampling.generate(state, self.grid_z, use_ema=False),
          rows,
          scale=self.scale,
          title=fixed_z,
          step=step,
          ema=False,
        )
      )
    fake = sampling.generate(st, self.eval_z)
    written.append(
      viz.pixel_histogram(
        os.path.join(samples, f"pixels_step_{step:07d}.png"), self.real, fake, title=run, step=step, ema=ema
      )
    )
    metrics = os.path.join(self.workdir, trainer.METRICS_FILE)
    if os.path.exists(metrics) and os.path.getsize(metrics):
      written.append(viz.loss_curves(metrics, os.path.join(self.workdir, "loss_curves.png"), title=run))
    return written


# ---------------------------------------------------------------------------- evaluation


def nearest_neighbour_labels(queries: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Label of each query's nearest reference image (Euclidean, pixel space)."""
  q = queries.reshape(len(queries), -1).astype(np.float32)
  r = reference.reshape(len(reference), -1).astype(np.float32)
  d = (q * q).sum(1)[:, None] - 2.0 * q @ r.T + (r * r).sum(1)[None, :]
  return labels[np.argmin(d, axis=1)]


def image_metrics(real: np.ndarray, fake: np.ndarray, labels: np.ndarray | None) -> dict:
  """Pixel-space numbers: Frechet distance (dims <= 4096), PRDC (k=3), the W1 distance between the
  marginal pixel-value distributions and,
  for labelled data, the classes of the samples by 1-nearest-neighbour to the real images."""
  flat_r, flat_f = real.reshape(len(real), -1), fake.reshape(len(fake), -1)
  out = {"num_samples": len(fake), "pixel_value_w1": viz.pixel_value_w1(real, fake)}
  if flat_r.shape[1] <= 4096:
    out["pixel_frechet_distance"] = frechet.fid_from_features(flat_r, flat_f)
  out.update({f"pixel_{k}": v for k, v in prdc.prdc(flat_r, flat_f, k=3).items()})
  if labels is not None:
    num_classes = int(labels.max()) + 1
    counts = np.bincount(nearest_neighbour_labels(fake, real, labels), minlength=num_classes)
    out["nn_class_counts"] = counts.tolist()
    out["nn_classes_covered"] = int(np.sum(counts >= 0.01 * len(fake)))
  return out


def pixel_report(state: GANState, cfg: Mapping[str, Any], config: gan.Config, source: images_lib.ImageSource) -> dict:
  """Sample-quality numbers of the sampling generator and, for scale, of held-out real images."""
  n = cfg["eval_samples"]
  real, labels = reference_images(source, n, cfg["seed"])
  st = sampling_state(state, config, cfg["seed"])
  results = {
    "step": int(state.step),
    "generated": image_metrics(
      real, sampling.generate(st, sampling.latents(cfg["seed"], EVAL_Z_TAG, len(real), config)), labels
    ),
  }
  if len(source) >= 2 * len(real):
    held_out, _ = reference_images(source, len(real), cfg["seed"], offset=len(real))
    results["real_held_out"] = image_metrics(real, held_out, labels)
  results["parameters"] = "ema" if st.ema_params is not None else "generator"
  return results
