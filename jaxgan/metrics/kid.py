"""Kernel Inception Distance (Bińkowski, Sutherland, Arbel & Gretton,
"Demystifying MMD GANs", ICLR 2018).

KID is the squared Maximum Mean Discrepancy between real features X and
generated features Y under the cubic polynomial kernel::

    k(x, y) = (x . y / d + 1)^3,        d = feature dimension,

estimated with the *unbiased* U-statistic on subsets of size m::

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j)
            + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
            - 2/m^2      sum_{i, j}   k(x_i, y_j).

Unlike FID the estimator has no bias in the sample size (its expectation is the
population MMD^2, which is 0 iff the two feature distributions agree on all
moments the kernel sees), so it can be negative for finite samples.  Following
the paper, the estimate is averaged over ``n_subsets`` random subsets of size
``subset_size`` drawn without replacement (inside each subset) from each set; the
mean and the sample standard deviation over subsets are returned.

Subset indices come from an explicit ``numpy.random.Generator`` (``seed``), and
the per-subset MMD is a jitted JAX function mapped over subsets with
``lax.map`` (one m x m kernel block in memory at a time).  It computes in the
input dtype (float32 unless ``jax_enable_x64`` is on), with matmuls at HIGHEST
precision.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["polynomial_kernel", "mmd2_unbiased", "kernel_inception_distance"]


def polynomial_kernel(
  x: jax.Array, y: jax.Array, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> jax.Array:
  """k(x, y) = (gamma x . y + coef0)^degree with gamma = 1/d by default (KID's kernel)."""
  if gamma is None:
    gamma = 1.0 / x.shape[-1]
  dot = jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST)
  return (gamma * dot + coef0) ** degree


@jax.jit
def mmd2_unbiased(x: jax.Array, y: jax.Array) -> jax.Array:
  """Unbiased MMD^2 between samples x (m, d) and y (n, d) under the KID cubic kernel."""
  m, n = x.shape[0], y.shape[0]
  kxx = polynomial_kernel(x, x)
  kyy = polynomial_kernel(y, y)
  kxy = polynomial_kernel(x, y)
  sxx = (jnp.sum(kxx) - jnp.trace(kxx)) / (m * (m - 1))
  syy = (jnp.sum(kyy) - jnp.trace(kyy)) / (n * (n - 1))
  sxy = jnp.sum(kxy) / (m * n)
  return sxx + syy - 2.0 * sxy


@jax.jit
def _mmd_over_subsets(x: jax.Array, y: jax.Array, idx_x: jax.Array, idx_y: jax.Array) -> jax.Array:
  def one(ix_iy):
    ix, iy = ix_iy
    return mmd2_unbiased(x[ix], y[iy])

  return jax.lax.map(one, (idx_x, idx_y))


def kernel_inception_distance(
  real_feats: Any,
  fake_feats: Any,
  n_subsets: int = 100,
  subset_size: int = 1000,
  seed: int | np.random.Generator = 0,
) -> tuple[float, float]:
  """KID = mean over subsets of the unbiased MMD^2 (Bińkowski et al., 2018).

  Args:
    real_feats: (n_real, d) features of real images.
    fake_feats: (n_fake, d) features of generated images.
    n_subsets: number of random subsets (paper: 100).
    subset_size: subset size m (paper: 1000); clipped to min(n_real, n_fake).
    seed: integer seed or an explicit ``np.random.Generator`` for the subsets.

  Returns:
    (mean, std) of the per-subset estimates; ``std`` uses ddof=1 (0.0 when
    ``n_subsets == 1``).  Standard error of the mean is ``std / sqrt(n_subsets)``
    (subsets overlap, so that is only a rough guide).
  """
  x = jnp.asarray(real_feats)
  y = jnp.asarray(fake_feats)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(f"features must be (n, d) with equal d; got {x.shape} and {y.shape}")
  m = int(min(subset_size, x.shape[0], y.shape[0]))
  if m < 2:
    raise ValueError("need at least 2 samples in each set")
  rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
  idx_x = np.stack([rng.choice(x.shape[0], m, replace=False) for _ in range(n_subsets)])
  idx_y = np.stack([rng.choice(y.shape[0], m, replace=False) for _ in range(n_subsets)])
  mmds = np.asarray(_mmd_over_subsets(x, y, jnp.asarray(idx_x), jnp.asarray(idx_y)), np.float64)
  std = float(np.std(mmds, ddof=1)) if n_subsets > 1 else 0.0
  return float(np.mean(mmds)), std
