"""Drawing many samples from a trained state, on the host side: fixed latents, fixed-size compiled batches.

* `latents` -- ``n`` latent vectors from (seed, tag), the same in every call
  (figures and evaluation use fixed z, never the training keys);
* `batched` -- runs a compiled function over arrays in chunks of one fixed
  size (the last chunk padded), so it compiles once whatever ``n`` is;
* `generate` -- G(z[, labels]) of a GAN state as numpy, in chunks;
* `sample_per_class` / `class_grid_inputs` -- class-conditional samples:
  ``per_class`` of every class, and the (z, labels) of a per-class grid.

The BatchNorm statistics to sample with are `jaxgan.families.gan.standing_batch_stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.families import gan

_generate = jax.jit(gan.sample, static_argnames=("use_ema", "train"))


def latents(seed: int, tag: int, n: int, config: gan.Config) -> np.ndarray:
  """``n`` float32 latent vectors of ``config``'s distribution (N(0, I) or U(-1, 1)^d) drawn from (seed, tag).

  Drawn with numpy: these fixed z's for figures and evaluation need no
  compiled sampler.
  """
  rng = np.random.default_rng([seed, tag])
  shape = (n, config.latent_dim)
  z = rng.uniform(-1.0, 1.0, shape) if config.latent_dist == "uniform" else rng.standard_normal(shape)
  return z.astype(np.float32)


def batched(fn: Callable[..., Any], inputs: np.ndarray | Sequence[np.ndarray], batch_size: int) -> np.ndarray:
  """``fn(*chunk)`` over ``inputs`` (one array, or several of the same length) in chunks of ``batch_size``.

  The last chunk is padded by repeating its last row, so one compiled shape
  serves every chunk; outputs are concatenated and trimmed to the inputs' length.
  """
  arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
  n = len(arrays[0])
  batch_size = max(1, min(batch_size, n))
  out = []
  for start in range(0, n, batch_size):
    chunk = [a[start : start + batch_size] for a in arrays]
    valid = len(chunk[0])
    if valid < batch_size:
      chunk = [np.concatenate([c, np.repeat(c[-1:], batch_size - valid, axis=0)]) for c in chunk]
    out.append(np.asarray(fn(*chunk))[:valid])
  return np.concatenate(out)


def generate(
  state: Any, z: np.ndarray, labels: np.ndarray | None = None, *, use_ema: bool = True, batch_size: int = 500
) -> np.ndarray:
  """G(z[, labels]) in evaluation mode as a numpy array (the EMA parameters when kept and ``use_ema``)."""
  use_ema = use_ema and state.ema_params is not None
  if labels is None:
    return batched(lambda zb: _generate(state, jnp.asarray(zb), use_ema=use_ema), np.asarray(z), batch_size)
  return batched(
    lambda zb, lb: _generate(state, jnp.asarray(zb), jnp.asarray(lb), use_ema=use_ema),
    [np.asarray(z), np.asarray(labels)],
    batch_size,
  )


def class_grid_inputs(
  key: jax.Array, num_classes: int, columns: int, config: gan.Config
) -> tuple[jax.Array, jax.Array]:
  """(z, labels) of a per-class grid, row-major: z[y * columns + j] = z_j, labels = y."""
  z = gan.sample_latent(key, columns, config)
  z = jnp.tile(z, (num_classes, 1))
  labels = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), columns)
  return z, labels


def sample_per_class(
  state: Any, config: gan.Config, key: jax.Array, per_class: int, batch_size: int = 500, use_ema: bool = True
) -> tuple[np.ndarray, np.ndarray]:
  """``per_class`` samples of every class: (images (K * per_class, ...), labels), fresh z for each."""
  labels = np.repeat(np.arange(config.num_classes, dtype=np.int32), per_class)
  z = np.asarray(gan.sample_latent(key, len(labels), config))
  return generate(state, z, labels, use_ema=use_ema, batch_size=batch_size), labels
