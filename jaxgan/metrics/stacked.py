"""Mode counting on Stacked MNIST (Metz et al., 2017; VEEGAN; PacGAN).

What lives here:

* :data:`STACKED_NUM_SAMPLES` -- the number of generated samples the protocol
  scores (26,000);
* :func:`stacked_mode_count` -- the number of the K^3 = 1,000 modes that
  generated RGB samples reach, and KL(p_hat || uniform), from a classifier of
  the single-channel base dataset applied to each channel.

Protocol (Metz et al., 2017, "Unrolled Generative Adversarial Networks", ICLR,
Section 3.3; Srivastava et al., 2017, "VEEGAN", NeurIPS, Table 2; Lin et al.,
2018, "PacGAN", NeurIPS, Table 2): draw N = 26,000 samples x_1..x_N from the
generator; classify each of the three channels of x_i with a classifier f
trained on the base dataset (MNIST), giving digits (a_i, b_i, c_i); the mode of
x_i is m_i = 100 a_i + 10 b_i + c_i (in general (a_i K + b_i) K + c_i for K
base classes). With the histogram p_hat(m) = #{i : m_i = m} / N over the M =
K^3 modes, report

* modes = #{m : p_hat(m) > 0}, the modes reached by at least one sample (a
  generator equal to the data, with a perfect classifier, misses a mode with
  probability (1 - 1/M)^N ~ e^-26 at N = 26,000: it reaches all 1,000);
* KL(p_hat || u) = sum_m p_hat(m) log(p_hat(m) / (1/M)) = sum_m p_hat(m)
  log(M p_hat(m)), the divergence from the uniform distribution u of the data
  (0 for a perfectly balanced histogram, log M = log 1000 ~ 6.91 when every
  sample falls in one mode; even exact samples of u give about (M - 1) / (2N)
  ~ 0.02 at N = 26,000 from the sampling noise of p_hat alone).

Classifier mistakes count too: they move samples between modes, so a real
data check (the same numbers on N real stacked images) is the reference.

The data side lives in `jaxgan.data.stacked` (``stacked_mnist``,
``stacked_digits``); the classifier in `jaxgan.metrics.classifier`
(``load_classifier(workdir)[0]`` is a suitable ``logits_fn``).
"""

from __future__ import annotations

import numpy as np

from jaxgan.metrics.classifier import LogitsFn, predict

__all__ = ["STACKED_NUM_SAMPLES", "stacked_mode_count"]

# Samples scored per evaluation in VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al., 2018, Table 2).
STACKED_NUM_SAMPLES = 26_000
_NUM_CHANNELS = 3


def _data_error(message: str) -> Exception:
  from jaxgan.data.images import DataError  # the data pipeline imports tfds; keep it lazy

  return DataError(message)


def stacked_mode_count(logits_fn: LogitsFn, images, num_classes: int = 10, batch_size: int = 500) -> dict:
  """Modes of Stacked MNIST reached by ``images`` and the KL of their histogram to uniform.

  Each channel ``images[..., j]`` (j = 0, 1, 2) is classified separately by
  ``logits_fn`` (argmax of its logits), giving base classes (a, b, c); the mode
  is ``(a * K + b) * K + c`` with K = ``num_classes`` (``100 a + 10 b + c``
  for digits). See the module docstring for the protocol and the maths.

  Args:
    logits_fn: a classifier of the base dataset, (N, H, W, 1) images in the
      range of ``images`` (e.g. [-1, 1]) -> (N, K) logits, e.g.
      ``jaxgan.metrics.classifier.load_classifier(workdir)[0]``.
    images: (N, H, W, 3) generated (or real) stacked images, float in [-1, 1]
      or uint8; use N = :data:`STACKED_NUM_SAMPLES` for the paper protocol.
    num_classes: K, the classes of the base dataset (10 for MNIST / digits).
    batch_size: images per classifier call (fixed, so it compiles once).

  Returns:
    ``{"modes": int, "kl_to_uniform": float, "num_samples": int,
    "num_modes": K**3}``.

  Raises:
    DataError: ``images`` is not a non-empty (N, H, W, 3) array, or
      ``num_classes`` < 1.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != _NUM_CHANNELS or len(images) == 0:
    raise _data_error(
      f"stacked mode count needs a non-empty batch of RGB images (N, H, W, 3), got shape {images.shape}"
    )
  if num_classes < 1:
    raise _data_error(f"stacked mode count: num_classes must be >= 1, got {num_classes}")
  n = len(images)
  # (N, H, W, 3) -> (3N, H, W, 1), channel-major: one classifier pass over every channel.
  channels = np.moveaxis(images, -1, 0)[..., None].reshape((_NUM_CHANNELS * n,) + images.shape[1:3] + (1,))
  digits = predict(logits_fn, channels, batch_size).astype(np.int64).reshape(_NUM_CHANNELS, n)
  if digits.min() < 0 or digits.max() >= num_classes:
    raise _data_error(
      f"stacked mode count: the classifier predicts class {int(digits.max())} but num_classes={num_classes}"
    )
  modes = (digits[0] * num_classes + digits[1]) * num_classes + digits[2]
  num_modes = num_classes**_NUM_CHANNELS
  counts = np.bincount(modes, minlength=num_modes).astype(np.float64)
  p_hat = counts / n
  nz = p_hat > 0
  kl = float(np.sum(p_hat[nz] * np.log(p_hat[nz] * num_modes)))
  return {"modes": int(np.sum(nz)), "kl_to_uniform": kl, "num_samples": int(n), "num_modes": int(num_modes)}
