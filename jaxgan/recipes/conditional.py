"""The class-conditional GAN recipe ``cgan`` (experiments/cgan.py; Mirza & Osindero, 2014).

* `build(cfg)` -- the run's `jaxgan.runs.Setup`: the labelled image source, a
  conditional generator / discriminator from the registries of
  `jaxgan.models.cgan` sized for its images and classes (`build_conditional_pair`),
  Adam or RMSProp for each network and the `jaxgan.families.gan.Config` with the
  penalties of --gp_weight / --r1_weight (`jaxgan.recipes.gan_settings`), and
  the training stream with labels.
* `sampling_state` -- EMA parameters with BatchNorm statistics re-measured
  for them under class-balanced labels.
* `class_grid` / `save_class_grid` / `class_grid_figure` -- the per-class
  sample grid of the cGAN paper (Fig. 2) and of the seed's
  ``sample_image(n_row=10)``: row ``y`` holds G(z_j, y) for columns j = 1..C,
  with the same z_j down each column, so a row shows one class and a column
  one latent "style" (raw pixels, or a figure with each row named by
  `class_labels`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxgan import runs, sampling, viz
from jaxgan.errors import ConfigError
from jaxgan.families import gan
from jaxgan.models import cgan, sngan
from jaxgan.recipes import gan_settings
from jaxgan.recipes import images as image_recipe
from jaxgan.state import GANState

EXPERIMENT = "cgan"


# The conditional registries: the cGAN paper's and convolutional models (`jaxgan.models.cgan`) and the SNGAN
# ResNets (`jaxgan.models.sngan`: conditional BatchNorm in G, the projection discriminator), plus
# ``sngan_ac``, the SNGAN discriminator with an AC-GAN classifier head instead of the projection (--loss=acgan).
GENERATORS = {**cgan.GENERATORS, **sngan.GENERATORS}
DISCRIMINATORS = {**cgan.DISCRIMINATORS, **sngan.DISCRIMINATORS, "sngan_ac": sngan.SNGANDiscriminator}


def _build(
  registry: dict, name: str, role: str, image_shape: tuple[int, int, int], num_classes: int, overrides: dict
) -> Any:
  if name not in registry:
    raise ConfigError(f"unknown conditional {role} {name!r}: choose one of {', '.join(sorted(registry))}")
  cls = registry[name]
  fields = {f.name for f in dataclasses.fields(cls)}
  # An AC-GAN discriminator reads no labels: it predicts them (aux_classes) instead of being conditioned.
  kwargs = {"aux_classes": num_classes, "num_classes": 0} if name == "sngan_ac" else {"num_classes": num_classes}
  if "image_shape" in fields:
    kwargs["image_shape"] = tuple(image_shape)
  if "image_size" in fields:
    if image_shape[0] != image_shape[1]:
      raise ConfigError(f"{role} {name!r} needs square images, got {tuple(image_shape)}")
    kwargs["image_size"] = image_shape[0]
  if "channels" in fields:
    kwargs["channels"] = image_shape[2]
  for key, value in overrides.items():
    if value is None:
      continue
    if key not in fields:
      raise ConfigError(f"{role} {name!r} has no setting {key!r} (it has: {', '.join(sorted(fields))})")
    kwargs[key] = value
  return cls(**kwargs)


def build_conditional_pair(
  generator: str,
  discriminator: str,
  image_shape: tuple[int, int, int],
  num_classes: int,
  g_overrides: dict | None = None,
  d_overrides: dict | None = None,
) -> tuple[Any, Any]:
  """Registry names -> (G, D) modules for ``image_shape`` (H, W, C) and ``num_classes``.

  ``*_overrides`` set module attributes (e.g. ``{"width": 32, "dropout": 0.0}``);
  entries that are None are ignored, unknown ones are a `ConfigError`.
  """
  g = _build(GENERATORS, generator, "generator", image_shape, num_classes, g_overrides or {})
  d = _build(DISCRIMINATORS, discriminator, "discriminator", image_shape, num_classes, d_overrides or {})
  return g, d


# How --g_widths / --d_widths map onto a conditional model's own settings, by the fields it has.
WIDTH_SETTINGS = (
  (("hidden",), None, "the hidden widths of the MLP"),
  (("width",), 1, "the base channel count"),
  (("z_units", "y_units", "joint_units"), 3, "the z, label and joint layer widths"),
  (("x_units", "y_units", "joint_units"), 3, "the image, label and joint maxout widths"),
)


def _width_overrides(registry: dict, name: str, cfg: Mapping[str, Any], flag: str, dropout_flag: str) -> dict:
  """--g_widths / --d_widths as the model's own settings (`WIDTH_SETTINGS`: an MLP's hidden widths, a
  convolutional network's base channel count, the paper models' three layer widths) and its dropout rate."""
  fields = {f.name for f in dataclasses.fields(registry[name])} if name in registry else set()
  if "dropout" in fields:
    overrides = {"dropout": cfg.get(dropout_flag)}
  elif cfg.get(dropout_flag):
    raise ConfigError(f"--{dropout_flag}: {name} has no dropout (set it to 0)")
  else:
    overrides = {}
  for names, count, meaning in WIDTH_SETTINGS:
    if set(names) <= fields:
      values = runs.widths(cfg, flag, count, f"{name}: {meaning}")
      if values:
        overrides.update(zip(names, [values] if count is None else values))
      return overrides
  if name in registry and runs.widths(cfg, flag):
    raise ConfigError(f"--{flag}: {name} has no width settings")
  return overrides


def conditional_models(cfg: Mapping[str, Any], image_shape: tuple[int, int, int], num_classes: int):
  """(G, D) of a cgan.py run from the registries of `jaxgan.models.cgan`, with its width overrides."""
  g, d = cfg["generator"], cfg["discriminator"]
  gen, disc = build_conditional_pair(
    g,
    d,
    tuple(image_shape),
    num_classes,
    g_overrides=_width_overrides(GENERATORS, g, cfg, "g_widths", "g_dropout"),
    d_overrides=_width_overrides(DISCRIMINATORS, d, cfg, "d_widths", "d_dropout"),
  )
  return gen, gan_settings.discriminator(cfg, disc)


def build(cfg: Mapping[str, Any], experiment: str = EXPERIMENT) -> runs.Setup:
  """The `jaxgan.runs.Setup` of a cgan.py run; a dataset without labels is one `ConfigError`."""
  runs.require(cfg, "dataset", "generator", "discriminator", "latent_dim", "seed")
  source, image_shape = image_recipe.open_dataset(cfg)
  if source.num_classes is None:
    raise ConfigError(f"dataset {cfg['dataset']!r} has no labels: a conditional GAN needs labelled data")
  image_shape, num_classes = tuple(image_shape), source.num_classes
  gen, disc = conditional_models(cfg, image_shape, num_classes)
  config = gan_settings.config(cfg, num_classes=num_classes)
  g_tx, d_tx = gan_settings.optimizers(cfg)

  def init_one(seed):
    nets = dict(generator=gen, discriminator=disc, g_tx=g_tx, d_tx=d_tx, data_shape=image_shape)
    return gan.init_state(config, seed=seed, **nets)

  info = {"source": source, "image_shape": image_shape, "num_classes": num_classes}
  info["class_labels"] = class_labels(source.class_names, num_classes)
  seeds, data = (int(cfg["seed"]),), lambda: image_recipe.make_batches(source, cfg, keep_labels=True)
  return runs.Setup(experiment, "conditional", gan, dict(cfg), config, seeds, init_one, data, batch_axis=1, info=info)


# ---------------------------------------------------------------------------- sampling


def sampling_state(
  state: GANState, config: gan.Config, key: jax.Array, num_batches: int = 8, batch_size: int = 250
) -> GANState:
  """The state to sample with: EMA parameters with BatchNorm statistics measured for them on
  ``num_batches`` batches of fresh z with class-balanced labels (`jaxgan.families.gan.standing_batch_stats`).
  Generators without BatchNorm or without EMA, and unconditional configs, are returned unchanged."""
  if not config.num_classes:
    return state
  return gan.standing_batch_stats(state, config, key, num_batches, batch_size)


@functools.partial(jax.jit, static_argnames=("use_ema",))
def _generate(state: GANState, z: jax.Array, labels: jax.Array, use_ema: bool) -> jax.Array:
  return gan.sample(state, z, labels, use_ema=use_ema)


def class_grid(
  state: GANState, config: gan.Config, key: jax.Array, columns: int = 10, use_ema: bool = True
) -> np.ndarray:
  """Samples for a per-class grid: (num_classes * columns, H, W, C), row y = class y.

  The generator runs in eval mode (BatchNorm running statistics, no
  dropout), with the EMA parameters when ``use_ema`` and the state keeps them.
  """
  if config.num_classes < 1:
    raise ConfigError("a per-class grid needs a conditional model (Config.num_classes > 0)")
  z, labels = sampling.class_grid_inputs(key, config.num_classes, columns, config)
  return np.asarray(_generate(state, z, labels, use_ema and state.ema_params is not None))


def save_class_grid(path: str, images: np.ndarray, num_classes: int, scale: int = 1) -> str:
  """Writes a `class_grid` as a PNG with one row per class (the raw pixels, no labels)."""
  return viz.save_image_grid(path, images, rows=num_classes, scale=scale)


def class_labels(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
  """The row label of each class: its index, followed by its name when the dataset has one
  that is not just the index ("3: cat" for CIFAR-10, "3" for MNIST or the digits)."""
  names = list(class_names or [])
  return [f"{y}: {names[y]}" if y < len(names) and str(names[y]) != str(y) else str(y) for y in range(num_classes)]


def class_grid_figure(
  path: str,
  images: np.ndarray,
  labels: Sequence[str],
  *,
  scale: int = 1,
  title: str = "",
  step: int | None = None,
  ema: bool | None = None,
) -> str:
  """Writes a `class_grid` as a labelled figure: one row per class, named by ``labels``
  (`class_labels`), one fixed z per column, titled with the step and generator."""
  return viz.save_grid_figure(
    path,
    images,
    rows=len(labels),
    scale=scale,
    title=title,
    step=step,
    ema=ema,
    row_labels=labels,
    row_title="class (y)",
    col_title="one fixed z per column",
  )
