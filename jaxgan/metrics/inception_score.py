"""Inception Score (Salimans, Goodfellow, Zaremba, Cheung, Radford & Chen,
"Improved Techniques for Training GANs", NeurIPS 2016).

For a classifier p(y|x) applied to generated images x ~ p_g::

    IS = exp( E_{x ~ p_g} KL( p(y|x) || p(y) ) ),      p(y) = E_{x ~ p_g} p(y|x).

IS is high when each prediction is confident (low entropy p(y|x)) and the
predictions are diverse (high entropy marginal p(y)); it lies in [1, C] for C
classes: 1 when every image gets the same prediction, C when predictions are
one-hot and the classes are used uniformly.  As in the original code the
samples are cut into ``n_splits`` consecutive chunks, the score is computed on
each chunk (with that chunk's marginal), and the mean and standard deviation
(ddof=0) over chunks are reported.  Computed in float64 with the convention
0 log 0 = 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax, xlogy

__all__ = ["inception_score"]


def inception_score(predictions: Any, n_splits: int = 10, from_logits: bool = False) -> tuple[float, float]:
  """Inception Score mean and std over ``n_splits`` consecutive splits.

  Args:
    predictions: (n, C) class probabilities p(y|x) (rows summing to 1), or
      logits if ``from_logits=True`` (e.g. the 1008-way logits of
      :class:`jaxgan.metrics.inception.InceptionFeatures`).
    n_splits: number of splits (the original protocol: 10 splits of 5000).
    from_logits: apply a softmax first.

  Returns:
    (mean, std) of exp(mean_x KL(p(y|x) || p(y))) over splits.
  """
  p = np.asarray(predictions, dtype=np.float64)
  if p.ndim != 2:
    raise ValueError(f"predictions must be (n, C); got shape {p.shape}")
  if n_splits < 1 or n_splits > p.shape[0]:
    raise ValueError(f"n_splits must be in [1, n={p.shape[0]}]; got {n_splits}")
  if from_logits:
    logp = log_softmax(p, axis=1)
    p = np.exp(logp)
  else:
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
      raise ValueError("probabilities must be non-negative and rows must sum to 1 (pass from_logits=True for logits)")
    logp = None
  scores = []
  for idx in np.array_split(np.arange(p.shape[0]), n_splits):
    part = p[idx]
    py = part.mean(axis=0, keepdims=True)
    # KL(p(y|x) || p(y)) = sum_y p log p - p log p(y), with 0 log 0 = 0.
    plogp = part * logp[idx] if logp is not None else xlogy(part, part)
    kl = np.sum(plogp - xlogy(part, py), axis=1)
    scores.append(np.exp(np.mean(kl)))
  scores = np.asarray(scores)
  return float(np.mean(scores)), float(np.std(scores))
