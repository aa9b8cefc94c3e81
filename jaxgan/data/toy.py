"""2-D Gaussian mixtures: the 8-Gaussian ring and the 25-Gaussian grid.

The standard mode-collapse benchmarks of PacGAN (Lin et al., 2018) and VEEGAN
(Srivastava et al., 2017). Sampling is a pure function of (key, n): the
iterator's stream is ``sample(fold_in(data_key, position), ...)``, so its whole
state is one integer position and resume replays the same batches exactly.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from jaxgan import parallel
from jaxgan.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class GaussianMixture2D:
  """An equal-weight mixture of isotropic 2-D Gaussians."""

  name: str
  means: tuple[tuple[float, float], ...]
  std: float

  @property
  def num_modes(self) -> int:
    return len(self.means)

  def means_array(self) -> np.ndarray:
    return np.asarray(self.means, np.float32)

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """n points: a uniform mode choice plus N(0, std^2 I) noise."""
    return _sample(key, n, self.means_array(), self.std)


@functools.partial(jax.jit, static_argnums=(1,))
def _sample(key, n, means, std):
  mode_key, noise_key = jax.random.split(key)
  idx = jax.random.randint(mode_key, (n,), 0, means.shape[0])
  return means[idx] + std * jax.random.normal(noise_key, (n, 2))


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _batch(data_key, position, means, std, batch_size, n_critic, rows):
  """One iterator batch in one compiled call (the trainer's per-iteration host work is one dispatch):
  ``sample(fold_in(data_key, position), batch_size * n_critic)``, as (n_critic, batch, 2) when n_critic is set,
  this process's rows ``rows[0]:rows[1]`` of the global batch."""
  x = _sample(jax.random.fold_in(data_key, position), batch_size * (n_critic or 1), means, std)
  if n_critic is not None:
    return x.reshape(n_critic, batch_size, 2)[:, rows[0] : rows[1]]
  return x[rows[0] : rows[1]]


def ring8(radius: float = 1.0, std: float = 0.01) -> GaussianMixture2D:
  """8 Gaussians with means at radius * (cos 2 pi i / 8, sin 2 pi i / 8), i = 0..7."""
  angles = 2 * np.pi * np.arange(8) / 8
  means = tuple((float(radius * np.cos(a)), float(radius * np.sin(a))) for a in angles)
  return GaussianMixture2D("ring8", means, std)


def grid25(spacing: float = 2.0, std: float = 0.05) -> GaussianMixture2D:
  """25 Gaussians with means in {-2s, -s, 0, s, 2s}^2 (s = 2: {-4, ..., 4}^2)."""
  coords = spacing * np.arange(-2, 3)
  means = tuple((float(x), float(y)) for x in coords for y in coords)
  return GaussianMixture2D("grid25", means, std)


MIXTURES = {"ring8": ring8, "grid25": grid25}


def get_mixture(name: str) -> GaussianMixture2D:
  try:
    return MIXTURES[name]()
  except KeyError:
    raise ConfigError(f"unknown 2-D dataset {name!r}: choose one of {', '.join(sorted(MIXTURES))}") from None


class MixtureIterator:
  """Infinite deterministic batches ``{"x": (n_critic, batch, 2)}`` from a mixture.

  Batch i is a function of (seed, i) only; `get_state` / `set_state` carry i.

  In a multi-process run every process draws the same global batch of
  ``batch_size`` rows and keeps only its own contiguous block
  (`jaxgan.parallel.process_batch_slice`), so the global batch -- and the whole
  run -- is the same as with one process.
  """

  def __init__(self, mixture: GaussianMixture2D, batch_size: int, seed: int, *, n_critic: int | None = None):
    self.mixture = mixture
    self.batch_size = batch_size
    self.n_critic = n_critic
    self.position = 0
    self._key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x0DA7A)
    self._rows = parallel.process_batch_slice(batch_size)
    self._means = jax.device_put(mixture.means_array())

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, jax.Array]:
    position = self.position
    self.position += 1
    rows = (self._rows.start, self._rows.stop)
    x = _batch(self._key, position, self._means, self.mixture.std, self.batch_size, self.n_critic, rows)
    return {"x": x}

  def get_state(self) -> dict:
    return {"position": self.position}

  def set_state(self, state: dict) -> None:
    self.position = int(state["position"])
