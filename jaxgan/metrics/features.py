"""Pluggable feature extractors and streaming feature extraction.

Every sample-quality metric here (FID, KID, precision/recall, IS) works on
features phi(x) of images x.  A *feature extractor* is any object with

* ``name: str``  -- identifies the feature space (stats computed with different
  extractors must never be compared), and
* ``__call__(images) -> features`` -- images are a float batch (N, H, W, C) in
  [-1, 1] (the range of a tanh generator); features are (N, D).

Extractors should be jitted and are fed fixed-size batches (the last batch is
padded, then trimmed), so each extractor compiles once per batch size.
Built in: :class:`FlattenFeatures` (raw pixels / raw 2-D points, for toy data)
and :class:`jaxgan.metrics.inception.InceptionFeatures` (FID's Inception pool3).

:func:`extract_features` streams from either an iterable of batches (a data
pipeline) or a sampling function ``sample_fn(key, n) -> images`` (a generator),
and :func:`compute_stats` folds the features straight into a float64
:class:`~jaxgan.metrics.frechet.GaussianStats` without keeping them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.metrics.frechet import GaussianStats

__all__ = [
  "FeatureExtractor",
  "FlattenFeatures",
  "SampleFn",
  "iterate_feature_batches",
  "extract_features",
  "compute_stats",
]

SampleFn = Callable[[jax.Array, int], Any]
"""``sample_fn(key, n) -> images (n, H, W, C) in [-1, 1]``, e.g. ``lambda k, n: G(z(k, n))``."""

ImageSource = Iterable[Any] | SampleFn


@runtime_checkable
class FeatureExtractor(Protocol):
  """Protocol: ``name`` and ``__call__(images_in_minus1_1) -> (N, D) features``."""

  name: str

  def __call__(self, images: jax.Array) -> jax.Array: ...


class FlattenFeatures:
  """Identity features: flattens each sample, phi(x) = vec(x).

  Useful for toy data (2-D mixtures: FID between point clouds) and tests.
  """

  name = "flatten"

  def __init__(self) -> None:
    self._fn = jax.jit(lambda x: jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32))

  def __call__(self, images: jax.Array) -> jax.Array:
    return self._fn(images)


def _as_images(batch: Any) -> np.ndarray:
  """Take the image part of a batch: arrays, (images, labels) tuples or dicts with 'image'."""
  if isinstance(batch, dict):
    for key in ("image", "images", "x"):
      if key in batch:
        return batch[key]
    raise KeyError(f"batch dict has no 'image'/'images'/'x' key: {sorted(batch)}")
  if isinstance(batch, (tuple, list)):
    return batch[0]
  return batch


def _source_batches(source: ImageSource, batch_size: int, key: jax.Array | None) -> Iterator[Any]:
  if callable(source) and not hasattr(source, "__iter__"):
    key = jax.random.PRNGKey(0) if key is None else key
    while True:
      key, sub = jax.random.split(key)
      yield source(sub, batch_size)
  else:
    if key is not None:
      raise ValueError("key is only used with a sample_fn source")
    yield from source


def iterate_feature_batches(
  extractor: FeatureExtractor,
  source: ImageSource,
  num_samples: int,
  batch_size: int = 50,
  key: jax.Array | None = None,
) -> Iterator[np.ndarray]:
  """Yield (<= batch_size, D) numpy feature batches for exactly ``num_samples`` images.

  Input batches of any size are re-chunked into ``batch_size`` pieces; a short
  final piece is zero-padded to ``batch_size`` before the extractor (no
  recompilation) and the padding rows are dropped from the output.

  Args:
    extractor: a :class:`FeatureExtractor`.
    source: an iterable of image batches (arrays, ``(images, labels)`` tuples or
      dicts with an ``'image'`` key), or ``sample_fn(key, n)``.
    num_samples: how many images to featurise.
    batch_size: extractor batch size (50).
    key: PRNG key for ``sample_fn`` (split once per call; default PRNGKey(0)).

  Raises:
    ValueError if an iterable source runs out before ``num_samples`` images.
  """
  if num_samples <= 0 or batch_size <= 0:
    raise ValueError("num_samples and batch_size must be positive")
  done = 0
  pending: list[np.ndarray] = []
  n_pending = 0

  def run(chunk: np.ndarray) -> np.ndarray:
    valid = chunk.shape[0]
    if valid < batch_size:
      pad = np.zeros((batch_size - valid,) + chunk.shape[1:], chunk.dtype)
      chunk = np.concatenate([chunk, pad], axis=0)
    return np.asarray(extractor(jnp.asarray(chunk)))[:valid]

  for batch in _source_batches(source, batch_size, key):
    images = np.asarray(_as_images(batch))
    images = images[: num_samples - done - n_pending]
    pending.append(images)
    n_pending += images.shape[0]
    while n_pending >= batch_size:
      allp = np.concatenate(pending, axis=0)
      chunk, rest = allp[:batch_size], allp[batch_size:]
      pending, n_pending = [rest], rest.shape[0]
      done += batch_size
      yield run(chunk)
    if done + n_pending >= num_samples:
      break
  if n_pending:
    allp = np.concatenate(pending, axis=0)
    done += allp.shape[0]
    yield run(allp)
  if done < num_samples:
    raise ValueError(f"source exhausted after {done} of {num_samples} samples")


def extract_features(extractor: FeatureExtractor, source: ImageSource, num_samples: int, **options: Any) -> np.ndarray:
  """Stream ``num_samples`` images through ``extractor``; return (num_samples, D) numpy features.

  ``options``: ``batch_size`` (50) and ``key``, as for :func:`iterate_feature_batches`.
  """
  return np.concatenate(list(iterate_feature_batches(extractor, source, num_samples, **options)), axis=0)


def compute_stats(extractor: FeatureExtractor, source: ImageSource, num_samples: int, **options: Any) -> GaussianStats:
  """Streaming float64 mean/covariance of the features (for FID) without storing them.

  ``options``: ``batch_size`` (50) and ``key``, as for :func:`iterate_feature_batches`.
  """
  stats: GaussianStats | None = None
  for feats in iterate_feature_batches(extractor, source, num_samples, **options):
    stats = GaussianStats.from_features(feats) if stats is None else stats.update(feats)
  assert stats is not None
  return stats
