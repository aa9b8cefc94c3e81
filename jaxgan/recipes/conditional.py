"""The class-conditional GAN recipe ``cgan`` (experiments/cgan.py; Mirza & Osindero, 2014).

* `build(cfg)` -- the run's `jaxgan.runs.Setup`: the labelled image source, a
  conditional generator / discriminator from the registries of
  `jaxgan.models.cgan` sized for its images and classes (`build_conditional_pair`),
  Adam or RMSProp for each network, the `jaxgan.families.gan.Config` with the
  penalties of --gp_weight / --r1_weight, and the training stream with labels.
* `sampling_state` -- EMA parameters with BatchNorm statistics re-measured
  for them under class-balanced labels.
* `class_grid` / `save_class_grid` -- the per-class sample grid of the cGAN
  paper (Fig. 2) and of the seed's ``sample_image(n_row=10)``: row ``y`` holds
  G(z_j, y) for columns j = 1..C, with the same z_j down each column, so a row
  shows one class and a column one latent "style".
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxgan import optimizers, regularizers, runs, sampling, viz
from jaxgan.data import images as images_lib
from jaxgan.errors import ConfigError
from jaxgan.families import gan
from jaxgan.models import cgan
from jaxgan.recipes import images as image_recipe
from jaxgan.state import GANState

EXPERIMENT = "cgan"


def _build(
  registry: dict, name: str, role: str, image_shape: tuple[int, int, int], num_classes: int, overrides: dict
) -> Any:
  if name not in registry:
    raise ConfigError(f"unknown conditional {role} {name!r}: choose one of {', '.join(sorted(registry))}")
  cls = registry[name]
  fields = {f.name for f in dataclasses.fields(cls)}
  kwargs = {"num_classes": num_classes}
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
  g = _build(cgan.GENERATORS, generator, "generator", image_shape, num_classes, g_overrides or {})
  d = _build(cgan.DISCRIMINATORS, discriminator, "discriminator", image_shape, num_classes, d_overrides or {})
  return g, d


def _ints(values, flag: str):
  if values is None:
    return None
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise ConfigError(f"--{flag}: hidden widths must be integers, got {','.join(values)}") from None


def conditional_models(cfg: Mapping[str, Any], image_shape: tuple[int, int, int], num_classes: int):
  """(G, D) of a cgan.py run from the registries of `jaxgan.models.cgan`, with its width overrides."""
  return build_conditional_pair(
    cfg["generator"],
    cfg["discriminator"],
    tuple(image_shape),
    num_classes,
    g_overrides={
      "hidden": _ints(cfg.get("g_hidden"), "g_hidden"),
      "width": cfg.get("g_width"),
      "dropout": cfg.get("g_dropout"),
    },
    d_overrides={
      "hidden": _ints(cfg.get("d_hidden"), "d_hidden"),
      "width": cfg.get("d_width"),
      "dropout": cfg.get("d_dropout"),
    },
  )


def make_optimizers(cfg: Mapping[str, Any]):
  """(g_tx, d_tx): --optimizer with --lr_schedule; D at --d_lr (default --lr) over n_critic updates per iteration."""
  d_lr = cfg["lr"] if cfg.get("d_lr") is None else cfg["d_lr"]

  def tx(lr, num_updates):
    rate = optimizers.learning_rate(
      lr, cfg.get("lr_schedule", "constant"), num_updates=num_updates, decay_start=cfg.get("decay_start", 0.0)
    )
    return optimizers.make_optimizer(cfg.get("optimizer", "adam"), rate, b1=cfg["b1"], b2=cfg["b2"])

  return tx(cfg["lr"], cfg["num_steps"]), tx(d_lr, cfg["num_steps"] * cfg["n_critic"])


def penalties(cfg: Mapping[str, Any]) -> tuple[regularizers.Penalty, ...]:
  """The D penalties of --gp_weight (WGAN-GP) and --r1_weight (R1 gamma), in that order."""
  out = []
  if cfg.get("gp_weight"):
    out.append(regularizers.wgan_gp(cfg["gp_weight"]))
  if cfg.get("r1_weight"):
    out.append(regularizers.r1(cfg["r1_weight"]))
  return tuple(out)


def step_config(cfg: Mapping[str, Any], num_classes: int) -> gan.Config:
  return gan.Config(
    loss=cfg["loss"],
    n_critic=cfg["n_critic"],
    latent_dim=cfg["latent_dim"],
    latent_dist=cfg["latent_dist"],
    real_label=cfg["real_label"],
    penalties=penalties(cfg),
    ema_decay=cfg["ema_decay"],
    num_classes=num_classes,
    skip_nonfinite=bool(cfg.get("skip_nonfinite", False)),
  )


def build(cfg: Mapping[str, Any], experiment: str = EXPERIMENT) -> runs.Setup:
  """The `jaxgan.runs.Setup` of a cgan.py run; a dataset without labels is one `ConfigError`."""
  runs.require(cfg, "dataset", "generator", "discriminator", "latent_dim", "seed")
  source = images_lib.make_source(cfg["dataset"], "train", cfg.get("data_dir"))
  if source.num_classes is None:
    raise ConfigError(f"dataset {cfg['dataset']!r} has no labels: a conditional GAN needs labelled data")
  image_shape, num_classes = tuple(source.images_shape), source.num_classes
  generator, discriminator = conditional_models(cfg, image_shape, num_classes)
  config = step_config(cfg, num_classes)
  g_tx, d_tx = make_optimizers(cfg)

  def init_one(seed):
    return gan.init_state(
      config, seed=seed, generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx, data_shape=image_shape
    )

  return runs.Setup(
    experiment=experiment,
    kind="conditional",
    family=gan,
    cfg=dict(cfg),
    config=config,
    seeds=(int(cfg["seed"]),),
    init_one=init_one,
    make_data=lambda: image_recipe.make_batches(source, cfg, keep_labels=True),
    batch_axis=1,
    info={"source": source, "image_shape": image_shape, "num_classes": num_classes},
  )


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
  """Writes a `class_grid` as a PNG with one row per class."""
  return viz.save_image_grid(path, images, rows=num_classes, scale=scale)
