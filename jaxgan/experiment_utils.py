"""Shared plumbing of the image-GAN entry points (experiments/gan.py, dcgan.py, explore.py).

What lives here:

* `define_image_gan_flags`: the flags both training scripts have (dataset,
  models and their widths, loss, label smoothing, D/G step counts, latent
  distribution, EMA, Adam and its schedule, figure cadence).
* `open_dataset`: the `jaxgan.data.images` source for the run, checked against
  the model's image shape BEFORE anything is trained or written (one error
  naming both shapes and the flag to change).
* `build_models`: generator and discriminator from the registries
  (`jaxgan.models.mlp`, `jaxgan.models.dcgan`), with their widths and image
  geometry; `create_state` / `step_config`: the GAN state and step settings
  rebuilt from a flag dict, so `explore.py` can restore a run from its
  ``flags.json``.
* `ImageBatches`: the adapter from the image iterator's ``{"image", "label"}``
  batches to the ``{"x"}`` batches of `jaxgan.steps` (keeps get/set_state).
* `SampleWriter`: the trainer's sample hook -- a sample grid from a FIXED z,
  the real-vs-fake pixel histogram and the loss curves.
* `standing_batch_stats`: BatchNorm statistics recomputed for the parameters
  that are sampled with (the EMA ones), `evaluate`: pixel-space sample-quality
  numbers, `train_image_gan`: the whole run (with --eval_every / --best_metric:
  periodic evaluation by `jaxgan.evaluation.training_eval` and the best
  checkpoint in ``checkpoints_best/``; `define_eval_flags`).

Every function that rebuilds the model takes a plain ``cfg`` dict of flag
values (``cli.resolved_flags()`` during training, ``flags.json`` afterwards).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags, logging

from jaxgan import checkpoint as checkpoint_lib
from jaxgan import cli, losses, parallel, steps, trainer, viz
from jaxgan.data import images as images_lib
from jaxgan.errors import CheckpointError, ConfigError
from jaxgan.metrics import frechet, prdc
from jaxgan.models import dcgan, mlp
from jaxgan.models.dcgan import radford_num_stages
from jaxgan.state import GANState, create_gan_state

# Image models only (the 2-D toy networks live in experiments/wgan.py).
GENERATORS = {"mlp": mlp.MLPGenerator, **dcgan.GENERATORS}
DISCRIMINATORS = {"mlp": mlp.MLPDiscriminator, "mlp_maxout": mlp.MaxoutDiscriminator, **dcgan.DISCRIMINATORS}

# How many numbers --g_widths / --d_widths take for each model, and what they mean.
G_WIDTHS = {
  "mlp": (None, "hidden layer widths, any number (default 1200,1200)"),
  "dcgan_mnist": (3, "dense width, projection channels, conv channels (default 512,128,64)"),
  "dcgan": (1, "channels of the last hidden layer, doubled towards z (default 64)"),
}
D_WIDTHS = {
  "mlp": (None, "hidden layer widths, any number (default 512,256)"),
  "mlp_maxout": (None, "maxout units per layer, any number (default 240,240)"),
  "dcgan_mnist": (3, "two conv widths and the dense width (default 256,512,256)"),
  "dcgan": (1, "channels of the first conv, doubled per stage (default 64)"),
}

SAMPLES_DIR = "samples"
EVAL_FILE = "eval.json"
_FIXED_Z_TAG = 0x5A3D  # fold_in tags: the grid's fixed z, the evaluation z, the real reference.
_EVAL_Z_TAG = 0xE7A1
_BN_STATS_TAG = 0xB57A


# ---------------------------------------------------------------------------- flags


def define_image_gan_flags(*, generator: str, discriminator: str, default_steps: int, default_batch: int) -> None:
  """Defines the flags of experiments/gan.py and experiments/dcgan.py (with their defaults)."""
  cli.define_common_flags(default_steps=default_steps, default_batch=default_batch)
  flags.DEFINE_string(
    "dataset",
    "digits",
    "digits (offline, 8x8), mnist, fashion_mnist, cifar10, svhn_cropped, celeb_a "
    "(64x64), any TFDS image dataset name, a .npz file or an image folder.",
  )
  flags.DEFINE_string("data_dir", None, "TFDS data directory holding the prepared dataset (never downloaded into).")
  flags.DEFINE_string("split", "train", "Split to train on.")
  flags.DEFINE_integer("image_size", 0, "Model image height = width (0: the data's).", lower_bound=0)
  flags.DEFINE_integer("channels", 0, "Model image channels, 1 or 3 (0: the data's).", lower_bound=0)
  flags.DEFINE_bool(
    "convert_data",
    False,
    "Resize / convert the data's channels to --image_size and --channels instead of stopping when they differ.",
  )
  flags.DEFINE_enum("generator", generator, sorted(GENERATORS), "Generator (registry name).")
  flags.DEFINE_enum("discriminator", discriminator, sorted(DISCRIMINATORS), "Discriminator (registry name).")
  flags.DEFINE_list(
    "g_widths",
    [],
    "Generator widths (empty: the model's defaults): " + "; ".join(f"{k}: {v[1]}" for k, v in G_WIDTHS.items()),
  )
  flags.DEFINE_list(
    "d_widths",
    [],
    "Discriminator widths (empty: the model's defaults): " + "; ".join(f"{k}: {v[1]}" for k, v in D_WIDTHS.items()),
  )
  flags.DEFINE_enum("loss", "non_saturating", sorted(losses.LOSSES), "Adversarial loss.")
  flags.DEFINE_float("real_label", 1.0, "Target of real samples; 0.9 is one-sided label smoothing.")
  flags.DEFINE_integer("n_critic", 1, "D updates per iteration (k of Goodfellow et al.'s Algorithm 1).", lower_bound=1)
  flags.DEFINE_integer("n_gen", 1, "G updates per iteration.", lower_bound=1)
  flags.DEFINE_enum("latent_dist", "normal", list(steps.LATENT_DISTRIBUTIONS), "z ~ N(0, I) or U(-1, 1)^d.")
  flags.DEFINE_integer("latent_dim", 100, "Size of z.", lower_bound=1)
  flags.DEFINE_float(
    "ema_decay",
    0.0,
    "Generator EMA decay (0: off); figures and evaluation use the EMA.",
    lower_bound=0.0,
    upper_bound=0.999999,
  )
  flags.DEFINE_float("lr", 2e-4, "Adam learning rate (both networks unless --d_lr).", lower_bound=0.0)
  flags.DEFINE_float("d_lr", 0.0, "Discriminator learning rate (0: --lr).", lower_bound=0.0)
  flags.DEFINE_float("b1", 0.5, "Adam beta1.")
  flags.DEFINE_float("b2", 0.999, "Adam beta2.")
  flags.DEFINE_enum(
    "lr_schedule",
    "constant",
    ["constant", "linear_decay", "cosine"],
    "Learning-rate schedule over each network's updates.",
  )
  flags.DEFINE_float(
    "decay_start",
    0.0,
    "linear_decay / cosine: fraction of the run before the decay starts.",
    lower_bound=0.0,
    upper_bound=1.0,
  )
  flags.DEFINE_integer("grid_size", 10, "The sample grid is grid_size x grid_size images.", lower_bound=1)
  flags.DEFINE_integer(
    "eval_samples", 1000, "Generated and real images for the histogram and evaluation.", lower_bound=10
  )
  define_eval_flags(classifier=True)


def define_eval_flags(classifier: bool) -> None:
  """--eval_every and --best_metric (and --classifier_workdir when ``classifier``): periodic evaluation."""
  flags.DEFINE_integer(
    "eval_every",
    0,
    "Iterations between evaluations of the sampling generator (0: off); "
    "each appends one line to eval.jsonl (jaxgan.evaluation.training_eval).",
    lower_bound=0,
  )
  flags.DEFINE_string(
    "best_metric",
    None,
    "With --eval_every: keep the checkpoint where this evaluation number "
    "is best in checkpoints_best/ (lower is better for fcd, kid, pixel_frechet_distance, "
    "pixel_kid; higher for precision, recall, density, coverage, label_accuracy); "
    "experiments/evaluate.py --step=best evaluates it.",
  )
  if classifier:
    flags.DEFINE_string(
      "classifier_workdir",
      None,
      "Classifier of experiments/train_classifier.py for "
      "--eval_every: FCD, KID and precision/recall in its feature space (without it they are "
      "computed on pixels: pixel_frechet_distance, pixel_kid, pixel_precision, ...).",
    )


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

  Raises:
    DataError: the dataset cannot be opened (unknown name, not prepared,
      empty or mixed-size image folder, ...).
    ConfigError: the data and model shapes differ.
  """
  name, data_dir = cfg["dataset"], cfg.get("data_dir")
  split = split or cfg.get("split", "train")
  if os.sep in name and not os.path.exists(name):
    raise images_lib.DataError(
      f"--dataset={name}: no such file or directory (a path must be an image folder or a .npz file)"
    )
  source = _quietly(images_lib.make_source, name, split=split, data_dir=data_dir)
  h, w, c = source.images_shape
  size, channels = int(cfg.get("image_size") or 0), int(cfg.get("channels") or 0)
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


def make_batches(source: images_lib.ImageSource, cfg: Mapping[str, Any]) -> ImageBatches:
  """The training stream: shuffled by --seed, a leading n_critic axis, "image" renamed "x"."""
  per_process = cfg["batch_size"] // jax.process_count()
  iterator = images_lib.make_iterator(source, per_process, cfg["seed"], n_critic=cfg["n_critic"])
  return ImageBatches(iterator)


def reference_images(
  source: images_lib.ImageSource, n: int, seed: int, offset: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
  """``n`` real images in [-1, 1] (and labels), a fixed random subset given ``seed``.

  ``offset`` skips the first examples of the same permutation, so
  ``offset=n`` gives a disjoint held-out set of the same size.
  """
  order = np.random.default_rng([seed, _EVAL_Z_TAG]).permutation(len(source))[offset : offset + n]
  examples = [source[int(i)] for i in order]
  images = np.stack([e["image"] for e in examples]).astype(np.float32) / np.float32(127.5) - 1.0
  labels = np.array([e["label"] for e in examples]) if examples and "label" in examples[0] else None
  return images, labels


# ---------------------------------------------------------------------------- models


def _widths(values, table: dict, name: str, flag: str) -> list[int]:
  try:
    widths = [int(v) for v in values or []]
  except ValueError:
    raise ConfigError(f"--{flag}={','.join(values)}: widths must be integers") from None
  if any(w < 1 for w in widths):
    raise ConfigError(f"--{flag}: widths must be >= 1")
  count, meaning = table[name]
  if widths and count is not None and len(widths) != count:
    raise ConfigError(
      f"--{flag} for {name} takes {count} number{'s' if count > 1 else ''} ({meaning}), got {len(widths)}"
    )
  return widths


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
  h, w, c = image_shape
  gw = _widths(cfg.get("g_widths"), G_WIDTHS, g_name, "g_widths")
  dw = _widths(cfg.get("d_widths"), D_WIDTHS, d_name, "d_widths")
  needs_square = [n for n in (g_name, d_name) if n.startswith("dcgan")]
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
  except ValueError as e:
    raise ConfigError(
      f"image size {h} does not suit {g_name}/{d_name} ({e}): choose another --image_size with --convert_data"
    ) from None

  if g_name == "mlp":
    gen = mlp.MLPGenerator(image_shape=(h, w, c), **({"hidden": tuple(gw)} if gw else {}))
  elif g_name == "dcgan_mnist":
    extra = dict(zip(("hidden", "base_channels", "mid_channels"), gw))
    gen = dcgan.MnistDCGANGenerator(image_size=h, channels=c, **extra)
  else:
    gen = dcgan.DCGANGenerator(image_size=h, channels=c, **({"width": gw[0]} if gw else {}))
  if d_name == "mlp":
    disc = mlp.MLPDiscriminator(**({"hidden": tuple(dw)} if dw else {}))
  elif d_name == "mlp_maxout":
    disc = mlp.MaxoutDiscriminator(**({"units": tuple(dw)} if dw else {}))
  elif d_name == "dcgan_mnist":
    disc = dcgan.MnistDCGANDiscriminator(**({"conv_channels": tuple(dw[:2]), "hidden": dw[2]} if dw else {}))
  else:
    disc = dcgan.DCGANDiscriminator(image_size=h, **({"width": dw[0]} if dw else {}))

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


def make_optimizer(cfg: Mapping[str, Any], lr: float, num_updates: int) -> optax.GradientTransformation:
  """Adam(lr, b1, b2) with the --lr_schedule over ``num_updates`` updates of one network."""
  start = int(cfg.get("decay_start", 0.0) * num_updates)
  schedule = cfg.get("lr_schedule", "constant")
  if schedule == "linear_decay":
    lr = optax.linear_schedule(lr, 0.0, max(num_updates - start, 1), transition_begin=start)
  elif schedule == "cosine":
    lr = optax.join_schedules(
      [optax.constant_schedule(lr), optax.cosine_decay_schedule(lr, max(num_updates - start, 1))], [start]
    )
  return optax.adam(lr, b1=cfg["b1"], b2=cfg["b2"])


def step_config(cfg: Mapping[str, Any]) -> steps.StepConfig:
  """The `jaxgan.steps.StepConfig` of the run."""
  return steps.StepConfig(
    loss=cfg["loss"],
    n_critic=cfg["n_critic"],
    n_gen=cfg["n_gen"],
    latent_dim=cfg["latent_dim"],
    latent_dist=cfg["latent_dist"],
    real_label=cfg["real_label"],
    ema_decay=cfg["ema_decay"],
    skip_nonfinite=bool(cfg.get("skip_nonfinite", False)),
  )


def create_state(cfg: Mapping[str, Any], gen, disc, image_shape, abstract: bool = False) -> GANState:
  """The initial `GANState` (Adam states sized for --num_steps x n_gen / n_critic updates).

  ``abstract=True`` gives only its shapes and dtypes (a restore target; nothing is computed).
  """
  g_tx = make_optimizer(cfg, cfg["lr"], cfg["num_steps"] * cfg["n_gen"])
  d_tx = make_optimizer(cfg, cfg.get("d_lr") or cfg["lr"], cfg["num_steps"] * cfg["n_critic"])

  def init():
    return create_gan_state(
      seed=cfg["seed"],
      generator=gen,
      discriminator=disc,
      g_tx=g_tx,
      d_tx=d_tx,
      latent_dim=cfg["latent_dim"],
      data_shape=image_shape,
      use_ema=cfg["ema_decay"] > 0,
    )

  if abstract:
    return jax.eval_shape(init)
  # One compiled program instead of one per initialiser op (much faster on CPU); the same numbers.
  return jax.jit(init)()


# ---------------------------------------------------------------------------- sampling


def standing_batch_stats(
  state: GANState, config: steps.StepConfig, key: jax.Array, num_batches: int = 8, batch_size: int = 256
) -> GANState:
  """`jaxgan.steps.standing_batch_stats`: BatchNorm statistics re-measured for the EMA parameters."""
  return steps.standing_batch_stats(state, config, key, num_batches, batch_size)


_generate = jax.jit(steps.generate, static_argnames=("use_ema", "train"))


def generate(state: GANState, z: np.ndarray, use_ema: bool = True, batch_size: int = 500) -> np.ndarray:
  """G(z) in eval mode, in chunks, as a numpy array (EMA parameters when kept)."""
  out = [
    np.asarray(_generate(state, jnp.asarray(z[i : i + batch_size]), use_ema=use_ema))
    for i in range(0, len(z), batch_size)
  ]
  return np.concatenate(out)


def latents(seed: int, tag: int, n: int, config: steps.StepConfig) -> np.ndarray:
  """``n`` latent vectors of the run's distribution from (seed, tag): the same in every call.

  Drawn with numpy (these fixed z's for figures and evaluation need no
  compiled sampler), float32, N(0, I) or U(-1, 1)^d as ``config.latent_dist``.
  """
  rng = np.random.default_rng([seed, tag])
  shape = (n, config.latent_dim)
  z = rng.uniform(-1.0, 1.0, shape) if config.latent_dist == "uniform" else rng.standard_normal(shape)
  return z.astype(np.float32)


def sampling_state(state: GANState, config: steps.StepConfig, seed: int) -> GANState:
  """The state to draw figures with: EMA parameters with their own BatchNorm statistics."""
  return standing_batch_stats(state, config, jax.random.fold_in(jax.random.PRNGKey(seed), _BN_STATS_TAG))


class SampleWriter:
  """The trainer's sample hook: grid from a fixed z, pixel histogram, loss curves.

  Every call writes ``samples/step_NNNNNNN.png`` (the same grid_size^2 z at
  every step, so the grids show one set of samples evolving; with EMA also
  ``..._raw.png`` from the raw generator), ``samples/pixels_step_NNNNNNN.png``
  (real vs generated pixel histograms) and ``loss_curves.png``; the first
  call also writes ``samples/real.png``, real images at the same scale.
  """

  def __init__(self, workdir: str, name: str, cfg: Mapping[str, Any], config: steps.StepConfig, real: np.ndarray):
    self.workdir, self.name, self.cfg, self.config, self.real = workdir, name, cfg, config, real
    self.grid_z = latents(cfg["seed"], _FIXED_Z_TAG, cfg["grid_size"] ** 2, config)
    self.eval_z = latents(cfg["seed"], _EVAL_Z_TAG, len(real), config)
    self.scale = max(1, 512 // (cfg["grid_size"] * (real.shape[1] + 1)))

  def __call__(self, state: GANState, step: int) -> None:
    st = sampling_state(state, self.config, self.cfg["seed"])
    samples = os.path.join(self.workdir, SAMPLES_DIR)
    rows = self.cfg["grid_size"]
    real_grid = os.path.join(samples, "real.png")
    if not os.path.exists(real_grid):
      viz.save_image_grid(real_grid, self.real[: rows**2], rows, scale=self.scale)
    viz.save_image_grid(
      os.path.join(samples, f"step_{step:07d}.png"), generate(st, self.grid_z), rows, scale=self.scale
    )
    if st.ema_params is not None:
      viz.save_image_grid(
        os.path.join(samples, f"step_{step:07d}_raw.png"),
        generate(state, self.grid_z, use_ema=False),
        rows,
        scale=self.scale,
      )
    fake = generate(st, self.eval_z)
    viz.pixel_histogram(
      os.path.join(samples, f"pixels_step_{step:07d}.png"),
      self.real,
      fake,
      title=f"{self.name} {self.cfg['dataset']} step {step}",
    )
    metrics = os.path.join(self.workdir, trainer.METRICS_FILE)
    if os.path.exists(metrics) and os.path.getsize(metrics):
      viz.loss_curves(
        metrics, os.path.join(self.workdir, "loss_curves.png"), title=f"{self.name} {self.cfg['dataset']}"
      )


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


def evaluate(state: GANState, cfg: Mapping[str, Any], config: steps.StepConfig, source: images_lib.ImageSource) -> dict:
  """Sample-quality numbers of the sampling generator and, for scale, of held-out real images."""
  n = cfg["eval_samples"]
  real, labels = reference_images(source, n, cfg["seed"])
  st = sampling_state(state, config, cfg["seed"])
  results = {
    "step": int(state.step),
    "generated": image_metrics(real, generate(st, latents(cfg["seed"], _EVAL_Z_TAG, len(real), config)), labels),
  }
  if len(source) >= 2 * len(real):
    held_out, _ = reference_images(source, len(real), cfg["seed"], offset=len(real))
    results["real_held_out"] = image_metrics(real, held_out, labels)
  results["parameters"] = "ema" if st.ema_params is not None else "generator"
  return results


# ---------------------------------------------------------------------------- the run


def train_image_gan(name: str) -> dict:
  """Trains the GAN the parsed flags describe (see `run_image_gan`)."""
  return run_image_gan(name, cli.resolved_flags())


def run_image_gan(name: str, flag_values: Mapping[str, Any]) -> dict:
  """Trains the GAN ``flag_values`` describe; returns (and writes to eval.json) the evaluation.

  Everything that can be wrong with the input (dataset, shapes, widths,
  devices) is checked before the workdir is touched. ``flag_values`` holds
  every flag of `define_image_gan_flags` and `jaxgan.cli.define_common_flags`;
  it is saved (with ``experiment=name``) as the run's flags.json.
  """
  cfg = {**flag_values, "experiment": name}
  source, image_shape = open_dataset(cfg)
  gen, disc = build_models(cfg, image_shape)
  config = step_config(cfg)
  try:
    mesh = parallel.make_data_mesh(cfg["num_devices"])
    parallel.check_batch_divisible(cfg["batch_size"], mesh)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if cfg["batch_size"] > len(source):
    raise ConfigError(f"--batch_size={cfg['batch_size']} exceeds the {len(source)} images of {cfg['dataset']}")
  from jaxgan import evaluation  # imports this module

  eval_fn, best_metric, best_mode = evaluation.training_eval(
    cfg,
    config,
    eval_every=cfg.get("eval_every", 0),
    best_metric=cfg.get("best_metric"),
    classifier_workdir=cfg.get("classifier_workdir"),
    num_samples=min(cfg["eval_samples"], len(source)),
  )
  data = make_batches(source, cfg)
  real, _ = reference_images(source, min(cfg["eval_samples"], len(source)), cfg["seed"])
  state = create_state(cfg, gen, disc, image_shape)
  logging.info(
    "%s: %s -> %s images, G %s, D %s, %d / %d parameters",
    name,
    cfg["dataset"],
    _shape_str(image_shape),
    cfg["generator"],
    cfg["discriminator"],
    sum(x.size for x in jax.tree.leaves(state.gen.params)),
    sum(x.size for x in jax.tree.leaves(state.disc.params)),
  )
  train_step = steps.make_train_step(
    config, state_sharding=parallel.replicated(mesh), batch_sharding=parallel.batch_sharded(mesh, batch_axis=1)
  )
  workdir = os.path.abspath(cfg["workdir"])
  tconfig = trainer.TrainerConfig(
    workdir=workdir,
    num_steps=cfg["num_steps"],
    log_every=cfg["log_every"],
    checkpoint_every=cfg["checkpoint_every"],
    sample_every=cfg["sample_every"],
    keep_checkpoints=cfg["keep_checkpoints"],
    eval_every=cfg.get("eval_every", 0),
  )
  hook = SampleWriter(workdir, name, cfg, config, real)
  start = time.perf_counter()
  try:
    state = trainer.fit(
      name=name,
      state=state,
      train_step=train_step,
      data=data,
      config=tconfig,
      run_flags=cfg,
      mesh=mesh,
      sample_hook=hook,
      eval_fn=eval_fn,
      best_metric=best_metric,
      best_mode=best_mode,
    )
  finally:
    data.close()
  wall = time.perf_counter() - start
  results = evaluate(state, cfg, config, source)
  results["wall_time_sec_this_process"] = wall
  checkpoint_lib.dump_json(os.path.join(workdir, EVAL_FILE), results)
  g = results["generated"]
  line = (
    f"{name} {cfg['dataset']} step {results['step']}: pixel FD "
    f"{g.get('pixel_frechet_distance', float('nan')):.2f}, precision {g['pixel_precision']:.3f}, "
    f"recall {g['pixel_recall']:.3f}, pixel-value W1 {g['pixel_value_w1']:.3f}"
  )
  if "real_held_out" in results:
    r = results["real_held_out"]
    line += (
      f" (held-out real: FD {r.get('pixel_frechet_distance', float('nan')):.2f}, precision "
      f"{r['pixel_precision']:.3f}, recall {r['pixel_recall']:.3f})"
    )
  if "nn_classes_covered" in g:
    line += f"; 1-NN classes covered {g['nn_classes_covered']}/{len(g['nn_class_counts'])}"
  print(f"{line}; {wall:.0f} s in this process")
  return results


# ---------------------------------------------------------------------------- restoring a run


def load_run(workdir: str, step: str | int = "latest") -> tuple[GANState, dict, steps.StepConfig, tuple[int, int, int]]:
  """Rebuilds the model of a finished (or running) run from ``flags.json`` and restores a checkpoint:
  ``step`` is "latest" (the newest readable one), "best" (``checkpoints_best/``, see --best_metric) or a
  step number (`jaxgan.trainer.restore_checkpoint`). Returns (state, cfg, step config, image shape)."""
  workdir = os.path.abspath(workdir)
  path = os.path.join(workdir, "flags.json")
  if not os.path.exists(path):
    raise CheckpointError(f"{workdir} has no flags.json: pass the --workdir of a gan.py / dcgan.py run")
  with open(path) as f:
    cfg = json.load(f)
  if "experiment" not in cfg or "generator" not in cfg:
    raise CheckpointError(f"{path} is not from experiments/gan.py or experiments/dcgan.py")
  size, channels = int(cfg.get("image_size") or 0), int(cfg.get("channels") or 0)
  if size and channels:
    image_shape = (size, size, channels)
  else:
    _, image_shape = open_dataset(cfg)
  gen, disc = build_models(cfg, image_shape)
  target = create_state(cfg, gen, disc, image_shape, abstract=True)
  state, _ = trainer.restore_checkpoint(
    workdir, target, checkpoint_lib.model_signature(cfg["experiment"], target), step
  )
  return state, cfg, step_config(cfg), image_shape
