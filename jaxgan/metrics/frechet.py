"""Fréchet distance between Gaussians fitted to features (the maths behind FID).

Fréchet Inception Distance (Heusel, Ramsauer, Unterthiner, Nessler & Hochreiter,
"GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", NeurIPS 2017) fits a Gaussian N(mu, Sigma) to the features of the
real and of the generated images and reports the squared 2-Wasserstein
(Fréchet) distance between the two Gaussians::

    FD^2 = ||mu_1 - mu_2||^2 + Tr(Sigma_1) + Tr(Sigma_2) - 2 Tr((Sigma_1 Sigma_2)^{1/2})

Numerics.  ``Sigma_1 Sigma_2`` is not symmetric, and ``scipy.linalg.sqrtm`` on
it can return complex results or lose accuracy when the covariances are
ill-conditioned (the usual case: 2048-d features estimated from a few thousand
samples).  Because ``Sigma_1 Sigma_2`` is similar to the symmetric PSD matrix
``M = Sigma_1^{1/2} Sigma_2 Sigma_1^{1/2}``
(``Sigma_1^{1/2} M Sigma_1^{-1/2} = Sigma_1 Sigma_2`` where invertible, and by
continuity otherwise), the two share eigenvalues, so::

    Tr((Sigma_1 Sigma_2)^{1/2}) = sum_i sqrt(lambda_i(M)),

with ``Sigma_1^{1/2}`` and ``lambda(M)`` both obtained from ``numpy.linalg.eigh``
(symmetric eigensolver, real output).  Everything runs in float64.  If the
eigenvalues come out non-finite or markedly negative, both covariances are
offset by ``eps * I`` and the computation is repeated (with a warning), as in
the reference FID implementations.

The streaming :class:`GaussianStats` keeps (count, mean, M2) in float64 where
``M2 = sum_i (x_i - mean)(x_i - mean)^T`` and merges batches with the pairwise
update of Chan, Golub & LeVeque (1979), so statistics of millions of features
are exact up to float64 rounding and never need all features in memory.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import numpy as np

ArrayLike = Any  # anything np.asarray accepts (numpy or jax arrays)

__all__ = [
  "GaussianStats",
  "frechet_distance",
  "fid_from_features",
  "fid_from_stats",
  "sqrtm_psd",
]


def _sym(a: np.ndarray) -> np.ndarray:
  return 0.5 * (a + a.T)


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
  """Principal square root of a symmetric PSD matrix via ``eigh``.

  Negative eigenvalues (rounding noise) are clipped to zero, so the result is
  always real, symmetric and PSD.
  """
  a = _sym(np.asarray(a, dtype=np.float64))
  w, v = np.linalg.eigh(a)
  w = np.clip(w, 0.0, None)
  return _sym((v * np.sqrt(w)) @ v.T)


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> tuple[float, float]:
  """Return (Tr((S1 S2)^{1/2}), most negative relative eigenvalue of M)."""
  s1_half = sqrtm_psd(sigma1)
  m = _sym(s1_half @ sigma2 @ s1_half)
  lam = np.linalg.eigvalsh(m)
  scale = max(float(np.max(np.abs(lam))) if lam.size else 0.0, np.finfo(np.float64).tiny)
  worst = float(np.min(lam)) / scale if lam.size else 0.0
  return float(np.sum(np.sqrt(np.clip(lam, 0.0, None)))), worst


def frechet_distance(
  mu1: ArrayLike,
  sigma1: ArrayLike,
  mu2: ArrayLike,
  sigma2: ArrayLike,
  eps: float = 1e-6,
  neg_tol: float = 1e-8,
) -> float:
  """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

  ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})``
  (Heusel et al., 2017), in float64.  The trace of the matrix square root is
  computed from the eigenvalues of the symmetric PSD matrix
  ``sigma1^{1/2} sigma2 sigma1^{1/2}`` (see the module docstring).

  Args:
    mu1, mu2: mean vectors, shape (d,).
    sigma1, sigma2: covariance matrices, shape (d, d) (symmetrised internally).
    eps: diagonal offset used only if the product is numerically ill-conditioned
      (non-finite or eigenvalues more negative than ``-neg_tol`` relative to
      the largest one).
    neg_tol: relative tolerance for negative eigenvalues before falling back.

  Returns:
    The distance as a Python float (>= 0 up to rounding).
  """
  mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
  if mu1.shape != mu2.shape:
    raise ValueError(f"mean shapes differ: {mu1.shape} vs {mu2.shape}")
  d = mu1.shape[0]
  if sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(f"covariances must be ({d}, {d}); got {sigma1.shape} and {sigma2.shape}")
  sigma1, sigma2 = _sym(sigma1), _sym(sigma2)
  diff = mu1 - mu2

  ok = np.all(np.isfinite(sigma1)) and np.all(np.isfinite(sigma2))
  if not ok:
    raise ValueError("covariance matrices contain non-finite values")
  tr_covmean, worst = _trace_sqrt_product(sigma1, sigma2)
  if not np.isfinite(tr_covmean) or worst < -neg_tol:
    warnings.warn(
      f"frechet_distance: ill-conditioned covariance product (min relative "
      f"eigenvalue {worst:.3e}); adding {eps:g} * I to both covariances",
      RuntimeWarning,
      stacklevel=2,
    )
    offset = eps * np.eye(d)
    tr_covmean, _ = _trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    if not np.isfinite(tr_covmean):
      raise FloatingPointError("frechet_distance: matrix square root is not finite")
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


@dataclasses.dataclass(frozen=True)
class GaussianStats:
  """Streaming float64 mean/covariance accumulator (immutable; methods return new objects).

  Fields:
    count: number of feature vectors seen.
    mean: running mean, shape (d,), float64.
    m2: sum of centred outer products ``sum_i (x_i - mean)(x_i - mean)^T``, (d, d).

  Usage::

      stats = GaussianStats.empty(d)
      for batch in batches:
          stats = stats.update(batch)          # (n, d) array, any float dtype
      mu, sigma = stats.mean, stats.cov

  Batches are merged with Chan et al.'s pairwise formula: for sets A and B with
  ``delta = mean_B - mean_A`` and ``n = n_A + n_B``,
  ``mean = mean_A + delta n_B / n`` and
  ``M2 = M2_A + M2_B + delta delta^T n_A n_B / n``.
  """

  count: int
  mean: np.ndarray
  m2: np.ndarray

  @property
  def dim(self) -> int:
    return int(self.mean.shape[0])

  @classmethod
  def empty(cls, dim: int) -> GaussianStats:
    return cls(0, np.zeros((dim,), np.float64), np.zeros((dim, dim), np.float64))

  @classmethod
  def from_features(cls, feats: ArrayLike) -> GaussianStats:
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2:
      raise ValueError(f"features must be (n, d); got shape {x.shape}")
    if x.shape[0] == 0:
      return cls.empty(x.shape[1])
    mean = x.mean(axis=0)
    xc = x - mean
    return cls(int(x.shape[0]), mean, xc.T @ xc)

  def merge(self, other: GaussianStats) -> GaussianStats:
    if other.dim != self.dim:
      raise ValueError(f"dimension mismatch: {self.dim} vs {other.dim}")
    if other.count == 0:
      return self
    if self.count == 0:
      return other
    n = self.count + other.count
    delta = other.mean - self.mean
    mean = self.mean + delta * (other.count / n)
    m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.count * other.count / n)
    return GaussianStats(n, mean, m2)

  def update(self, feats: ArrayLike) -> GaussianStats:
    """Return the statistics after adding a batch of features of shape (n, d)."""
    return self.merge(GaussianStats.from_features(feats))

  @property
  def cov(self) -> np.ndarray:
    """Unbiased sample covariance (ddof=1, as ``np.cov`` in reference FID code)."""
    if self.count < 2:
      raise ValueError("need at least 2 samples for a covariance")
    return _sym(self.m2 / (self.count - 1))

  def save(self, path: str | os.PathLike) -> None:
    """Save as ``.npz`` with keys ``mu``, ``sigma`` (usual FID stats layout), ``count``, ``m2``."""
    np.savez(path, mu=self.mean, sigma=self.cov, count=np.int64(self.count), m2=self.m2)

  @classmethod
  def load(cls, path: str | os.PathLike) -> GaussianStats:
    """Load stats saved by :meth:`save`, or a reference file with only ``mu``/``sigma``
    (then ``count`` is unknown; it is set to a large value so that ``cov`` returns
    ``sigma`` up to a 1 + 1e-12 factor -- only use such stats as a fixed reference)."""
    with np.load(path) as f:
      mu = np.asarray(f["mu"], np.float64)
      if "m2" in f and "count" in f:
        return cls(int(f["count"]), mu, np.asarray(f["m2"], np.float64))
      sigma = np.asarray(f["sigma"], np.float64)
    n = 10**12
    return cls(n, mu, sigma * (n - 1))


def fid_from_stats(a: GaussianStats, b: GaussianStats, eps: float = 1e-6) -> float:
  """Fréchet distance between the Gaussians fitted by two :class:`GaussianStats`."""
  return frechet_distance(a.mean, a.cov, b.mean, b.cov, eps=eps)


def fid_from_features(real_feats: ArrayLike, fake_feats: ArrayLike, eps: float = 1e-6) -> float:
  """FID (Heusel et al., 2017) from two (n, d) feature arrays (e.g. Inception pool3)."""
  return fid_from_stats(GaussianStats.from_features(real_feats), GaussianStats.from_features(fake_feats), eps=eps)
