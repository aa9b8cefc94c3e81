"""Mode coverage on 2-D Gaussian mixtures, as in PacGAN and VEEGAN.

Protocol (Srivastava et al., 2017; Lin et al., 2018): draw 2,500 generated
samples and assign each to its nearest mixture mean. A sample is *high quality*
when it lies within 3 standard deviations of that mean; a mode is *captured*
when at least one high-quality sample is assigned to it. Reported: modes
captured, the percentage of high-quality samples, and the reverse KL divergence
KL(q || p) between the mode histogram q of the high-quality samples and the
uniform distribution p over modes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

NUM_EVAL_SAMPLES = 2500


@dataclasses.dataclass(frozen=True)
class ModeMetrics:
  modes_captured: int
  num_modes: int
  high_quality_fraction: float
  reverse_kl: float

  def as_dict(self) -> dict:
    return {
      "modes_captured": self.modes_captured,
      "num_modes": self.num_modes,
      "high_quality_percent": 100.0 * self.high_quality_fraction,
      "reverse_kl": self.reverse_kl,
    }

  def __str__(self) -> str:
    return (
      f"modes {self.modes_captured}/{self.num_modes}, high quality "
      f"{100 * self.high_quality_fraction:.1f}%, reverse KL {self.reverse_kl:.4f}"
    )


def mode_metrics(samples: np.ndarray, means: np.ndarray, std: float, threshold_stds: float = 3.0) -> ModeMetrics:
  """Mode statistics of ``samples`` (N, 2) against a mixture with ``means`` (M, 2)."""
  samples = np.asarray(samples, np.float64)
  means = np.asarray(means, np.float64)
  if samples.ndim != 2 or samples.shape[1] != means.shape[1]:
    raise ValueError(f"samples must be (N, {means.shape[1]}), got {samples.shape}")
  d2 = np.sum((samples[:, None, :] - means[None, :, :]) ** 2, axis=-1)
  nearest = np.argmin(d2, axis=1)
  dist = np.sqrt(d2[np.arange(len(samples)), nearest])
  finite = np.all(np.isfinite(samples), axis=1)
  high_quality = finite & (dist <= threshold_stds * std)
  counts = np.bincount(nearest[high_quality], minlength=len(means)).astype(np.float64)
  captured = int(np.sum(counts > 0))
  hq_fraction = float(np.mean(high_quality)) if len(samples) else 0.0
  if counts.sum() > 0:
    q = counts / counts.sum()
    nz = q > 0
    reverse_kl = float(np.sum(q[nz] * np.log(q[nz] * len(means))))
  else:
    reverse_kl = float("inf")
  return ModeMetrics(captured, len(means), hq_fraction, reverse_kl)
