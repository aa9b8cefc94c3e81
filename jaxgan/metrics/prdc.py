"""Precision and recall with k-NN manifolds (Kynkäänniemi, Karras, Laine,
Lehtinen & Aila, "Improved Precision and Recall Metric for Assessing Generative
Models", NeurIPS 2019), plus density and coverage (Naeem, Oh, Uh, Choi & Yoo,
"Reliable Fidelity and Diversity Metrics for Generative Models", ICML 2020),
which reuse the same distances.

Each feature set approximates its manifold by the union of balls
B(phi, NND_k(phi)) around its points, where NND_k(phi) is the distance from phi
to its k-th nearest neighbour in the same set (the point itself excluded)::

    manifold(Phi) = union_{phi in Phi} B(phi, NND_k(phi))
    precision = 1/|Phi_g| sum_{g in Phi_g} 1[g in manifold(Phi_r)]   (fidelity)
    recall    = 1/|Phi_r| sum_{r in Phi_r} 1[r in manifold(Phi_g)]   (diversity)
    density   = 1/(k |Phi_g|) sum_{g} sum_{r} 1[g in B(r, NND_k(r))]
    coverage  = 1/|Phi_r| sum_{r} 1[ min_g ||g - r|| <= NND_k(r) ]

The paper uses k = 3.  Pairwise (squared Euclidean) distances are computed in
jitted JAX blocks of ``batch_size`` rows against the whole other set, so memory
is O(batch_size * n) and each block has a fixed shape (the last one is padded),
which keeps compilation to one trace per set size.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
  "pairwise_sq_distances",
  "knn_radii",
  "precision_recall",
  "prdc",
]


@jax.jit
def _sq_dist_block(a: jax.Array, b: jax.Array) -> jax.Array:
  aa = jnp.sum(a * a, axis=1)[:, None]
  bb = jnp.sum(b * b, axis=1)[None, :]
  ab = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(aa + bb - 2.0 * ab, 0.0)


def _blocks(x: jax.Array, batch_size: int):
  """Yield (padded block, number of valid rows) with fixed block shape."""
  n = x.shape[0]
  for start in range(0, n, batch_size):
    blk = x[start : start + batch_size]
    valid = blk.shape[0]
    if valid < batch_size and n > batch_size:
      blk = jnp.pad(blk, ((0, batch_size - valid), (0, 0)))
    yield blk, valid


def pairwise_sq_distances(x: Any, y: Any, batch_size: int = 1024) -> np.ndarray:
  """Squared Euclidean distances (n_x, n_y), computed in jitted row blocks."""
  x, y = jnp.asarray(x), jnp.asarray(y)
  out = [np.asarray(_sq_dist_block(b, y))[:v] for b, v in _blocks(x, batch_size)]
  return np.concatenate(out, axis=0)


@functools.partial(jax.jit, static_argnames=("k",))
def _kth_block(block: jax.Array, x: jax.Array, k: int) -> jax.Array:
  d = _sq_dist_block(block, x)
  # k+1 smallest including the point itself at distance 0.
  neg_top, _ = jax.lax.top_k(-d, k + 1)
  return -neg_top[:, k]


def knn_radii(x: Any, k: int = 3, batch_size: int = 1024) -> np.ndarray:
  """Squared distance from each row of x to its k-th nearest neighbour in x (self excluded)."""
  x = jnp.asarray(x)
  if x.shape[0] <= k:
    raise ValueError(f"need more than k={k} points; got {x.shape[0]}")
  out = [np.asarray(_kth_block(b, x, k))[:v] for b, v in _blocks(x, batch_size)]
  return np.concatenate(out)


@jax.jit
def _membership_block(block: jax.Array, centres: jax.Array, radii: jax.Array, n_valid: jax.Array):
  """Counts for the first ``n_valid`` query rows of a (possibly padded) block.

  Returns (#rows inside any ball, #(row, ball) containments, per-centre min distance).
  """
  d = _sq_dist_block(block, centres)
  valid = (jnp.arange(block.shape[0]) < n_valid)[:, None]
  inside = (d <= radii[None, :]) & valid
  n_inside = jnp.sum(jnp.any(inside, axis=1))
  n_pairs = jnp.sum(inside)
  min_d = jnp.min(jnp.where(valid, d, jnp.inf), axis=0)
  return n_inside, n_pairs, min_d


def prdc(real_feats: Any, fake_feats: Any, k: int = 3, batch_size: int = 1024) -> dict[str, float]:
  """Precision, recall (Kynkäänniemi et al., 2019), density and coverage (Naeem et al., 2020).

  Args:
    real_feats: (n_real, d) real features.
    fake_feats: (n_fake, d) generated features.
    k: neighbourhood size for the k-NN radii (paper: 3).
    batch_size: rows per distance block.

  Returns:
    dict with float ``precision``, ``recall``, ``density``, ``coverage``.
  """
  real = jnp.asarray(real_feats)
  fake = jnp.asarray(fake_feats)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise ValueError(f"features must be (n, d) with equal d; got {real.shape} and {fake.shape}")
  r_real = jnp.asarray(knn_radii(real, k, batch_size))
  r_fake = jnp.asarray(knn_radii(fake, k, batch_size))

  # Fake queries against real balls: precision, density, and nearest-fake distance per real.
  n_in, n_balls = 0, 0
  min_d_real = np.full((real.shape[0],), np.inf)
  for blk, v in _blocks(fake, batch_size):
    inside, pairs, mind = _membership_block(blk, real, r_real, v)
    n_in += int(inside)
    n_balls += int(pairs)
    min_d_real = np.minimum(min_d_real, np.asarray(mind))
  # Real queries against fake balls: recall.
  n_rec = 0
  for blk, v in _blocks(real, batch_size):
    inside, _, _ = _membership_block(blk, fake, r_fake, v)
    n_rec += int(inside)

  n_real, n_fake = real.shape[0], fake.shape[0]
  return {
    "precision": n_in / n_fake,
    "recall": n_rec / n_real,
    "density": n_balls / (k * n_fake),
    "coverage": float(np.mean(min_d_real <= np.asarray(r_real))),
  }


def precision_recall(real_feats: Any, fake_feats: Any, k: int = 3, batch_size: int = 1024) -> tuple[float, float]:
  """(precision, recall) of Kynkäänniemi et al. (2019); see :func:`prdc`."""
  out = prdc(real_feats, fake_feats, k=k, batch_size=batch_size)
  return out["precision"], out["recall"]
