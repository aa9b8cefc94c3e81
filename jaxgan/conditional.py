"""Helpers for class-conditional GANs (Mirza & Osindero, 2014): models, sampling state, per-class samples.

* :func:`build_conditional_pair` -- a conditional generator / discriminator
  from the registries of `jaxgan.models.cgan`, sized for a dataset's image
  shape and number of classes.
* :func:`sampling_state` -- EMA parameters with BatchNorm statistics
  re-measured for them under class-balanced labels.
* :func:`class_grid` / :func:`save_class_grid` -- the per-class sample grid of
  the cGAN paper (Fig. 2) and of the seed's ``sample_image(n_row=10)``: row
  ``y`` holds G(z_j, y) for columns j = 1..C, with the same z_j down each
  column, so a row shows one class and a column one latent "style".
* :func:`sample_per_class` -- ``n`` samples of every class (for label accuracy).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan import steps, viz
from jaxgan.errors import ConfigError
from jaxgan.models import cgan
from jaxgan.state import GANState

__all__ = [
  "build_conditional_pair",
  "class_grid",
  "class_grid_inputs",
  "sample_per_class",
  "sampling_state",
  "save_class_grid",
]


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


def sampling_state(
  state: GANState, config: steps.StepConfig, key: jax.Array, num_batches: int = 8, batch_size: int = 250
) -> GANState:
  """The state to sample with: EMA parameters with BatchNorm statistics measured for them on
  ``num_batches`` batches of fresh z with class-balanced labels (`jaxgan.steps.standing_batch_stats`).
  Generators without BatchNorm or without EMA, and unconditional configs, are returned unchanged."""
  if not config.num_classes:
    return state
  return steps.standing_batch_stats(state, config, key, num_batches, batch_size)


@functools.partial(jax.jit, static_argnames=("use_ema",))
def _generate(state: GANState, z: jax.Array, labels: jax.Array, use_ema: bool) -> jax.Array:
  return steps.generate(state, z, labels, use_ema=use_ema)


def class_grid_inputs(
  key: jax.Array, num_classes: int, columns: int, config: steps.StepConfig
) -> tuple[jax.Array, jax.Array]:
  """(z, labels) of a per-class grid, row-major: z[y * columns + j] = z_j, labels = y."""
  z = steps.sample_latent(key, columns, config)
  z = jnp.tile(z, (num_classes, 1))
  labels = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), columns)
  return z, labels


def class_grid(
  state: GANState, config: steps.StepConfig, key: jax.Array, columns: int = 10, use_ema: bool = True
) -> np.ndarray:
  """Samples for a per-class grid: (num_classes * columns, H, W, C), row y = class y.

  The generator runs in eval mode (BatchNorm running statistics, no
  dropout), with the EMA parameters when ``use_ema`` and the state keeps them.
  """
  if config.num_classes < 1:
    raise ConfigError("a per-class grid needs a conditional model (StepConfig.num_classes > 0)")
  z, labels = class_grid_inputs(key, config.num_classes, columns, config)
  return np.asarray(_generate(state, z, labels, use_ema and state.ema_params is not None))


def save_class_grid(path: str, images: np.ndarray, num_classes: int, scale: int = 1) -> str:
  """Writes a `class_grid` as a PNG with one row per class."""
  return viz.save_image_grid(path, images, rows=num_classes, scale=scale)


def sample_per_class(
  state: GANState, config: steps.StepConfig, key: jax.Array, per_class: int, batch_size: int = 500, use_ema: bool = True
) -> tuple[np.ndarray, np.ndarray]:
  """``per_class`` samples of every class: (images (K * per_class, ...), labels), fresh z for each.

  Batches have a fixed size (the last one padded) so the generator compiles once.
  """
  labels = np.repeat(np.arange(config.num_classes, dtype=np.int32), per_class)
  z = np.asarray(steps.sample_latent(key, len(labels), config))
  use_ema = use_ema and state.ema_params is not None
  out = []
  batch_size = min(batch_size, len(labels))
  for start in range(0, len(labels), batch_size):
    zb, lb = z[start : start + batch_size], labels[start : start + batch_size]
    valid = len(lb)
    if valid < batch_size:
      zb = np.concatenate([zb, np.zeros((batch_size - valid, zb.shape[1]), zb.dtype)])
      lb = np.concatenate([lb, np.zeros((batch_size - valid,), lb.dtype)])
    out.append(np.asarray(_generate(state, jnp.asarray(zb), jnp.asarray(lb), use_ema))[:valid])
  return np.concatenate(out), labels
