"""Stacked MNIST: RGB images made of three independently drawn grayscale digits.

What lives here:

* :class:`StackedSource` -- an :class:`~jaxgan.data.images.ImageSource` wrapping
  any single-channel labelled source (TFDS ``mnist``, the vendored 8x8
  ``digits``, ...). Example ``i`` is the RGB image whose red, green and blue
  channels are the base images ``base[a_i]``, ``base[b_i]``, ``base[c_i]``,
  labelled ``(y(a_i) * K + y(b_i)) * K + y(c_i)`` for a base with K classes,
  i.e. ``100 a + 10 b + c`` over 1,000 classes for the 10 digit classes.
* :func:`base_name` -- ``<base>`` of a name ``stacked_<base>``;
  ``jaxgan.data.images.make_source`` opens such names (``stacked_mnist``:
  28x28x3, ``stacked_digits``: 8x8x3, offline) as a `StackedSource` over the
  base dataset.

This is the mode-collapse benchmark of Metz et al., 2017 ("Unrolled Generative
Adversarial Networks", ICLR), used by Srivastava et al., 2017 (VEEGAN, NeurIPS)
and Lin et al., 2018 (PacGAN, NeurIPS): the data has K^3 = 1,000 equally likely
modes, and `jaxgan.metrics.stacked.stacked_mode_count` counts how many of them a
generator reaches.

Determinism: the three index maps ``a, b, c`` (each a concatenation of
independent permutations of the base indices, so every base image is used
equally often in every channel and the three channels are independent) are
drawn once from ``numpy.random.default_rng(seed)``. Example ``i`` is therefore a
pure function of ``(i, seed)`` and the base data, so the shuffling, sharding and
checkpointed position of `jaxgan.data.images.make_iterator` work unchanged.

Length: by default ``max(len(base), 60_000)``. 60,000 is the size of the MNIST
training set, so ``stacked_mnist`` (train) has one stacked image per MNIST
training image, and every smaller base (``digits``, MNIST's test split) is
stretched to the same size: about 60 examples per mode on average, so all
1,000 modes are present in the data (with only ``len(base)`` = 1,500 digits,
about a fifth of the modes would be missing). Pass ``length=`` to choose.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxgan.data.sources import DataError, ImageSource

__all__ = ["DEFAULT_MIN_LENGTH", "STACKED_PREFIX", "StackedSource", "base_name"]

STACKED_PREFIX = "stacked_"
DEFAULT_MIN_LENGTH = 60_000  # The size of the MNIST training set; see the module docstring.
_NUM_CHANNELS = 3


def base_name(name: str) -> str | None:
  """``"mnist"`` for ``"stacked_mnist"``; None when ``name`` is not a stacked dataset name."""
  if name.startswith(STACKED_PREFIX) and len(name) > len(STACKED_PREFIX):
    return name[len(STACKED_PREFIX) :]
  return None


def _index_maps(base_len: int, length: int, seed: int) -> np.ndarray:
  """(3, length) int64: per channel, independent permutations of range(base_len), concatenated."""
  rng = np.random.default_rng(seed)
  reps = -(-length // base_len)  # ceil
  return np.stack(
    [np.concatenate([rng.permutation(base_len) for _ in range(reps)])[:length] for _ in range(_NUM_CHANNELS)]
  ).astype(np.int64)


class StackedSource(ImageSource):
  """RGB images whose three channels are three independently drawn images of ``base``.

  Example ``i`` is ``{"image": concat(base[a_i], base[b_i], base[c_i]) along
  the channel axis, "label": (y_a * K + y_b) * K + y_c}`` where K =
  ``base.num_classes`` (``100 y_a + 10 y_b + y_c`` for digits); see the module
  docstring for how ``a, b, c`` are drawn from ``seed``.

  Attributes:
    base: the single-channel labelled source.
    base_num_classes: K; ``num_classes`` is K**3.
    seed: the seed of the index maps.
    indices: (3, len) int64, the base index of every channel of every example.
  """

  def __init__(
    self,
    base: ImageSource,
    *,
    seed: int = 0,
    length: int | None = None,
    name: str | None = None,
    image_size: int | None = None,
    crop: int | None = None,
    channels: int | None = None,
    convert_channels: bool = False,
  ):
    """Wraps ``base``.

    Args:
      base: an `ImageSource` with 1-channel images and labels.
      seed: seed of the three index maps (the same seed gives the same dataset).
      length: number of examples (default ``max(len(base), DEFAULT_MIN_LENGTH)``).
      name: the source's name (default ``stacked_<base.name>``).
      image_size, crop, channels, convert_channels: as `ImageSource`, applied
        to the stacked RGB image.

    Raises:
      DataError: ``base`` is not single-channel, has no labels, is empty, or
        ``length`` < 1.
    """
    name = name or f"{STACKED_PREFIX}{base.name}"
    if base.images_shape[-1] != 1:
      raise DataError(
        f"{name}: the base dataset {base.name} has {base.images_shape[-1]}-channel images; stacking needs "
        "grayscale (1-channel) images, e.g. mnist, fashion_mnist or digits"
      )
    if base.num_classes is None:
      raise DataError(
        f"{name}: the base dataset {base.name} has no labels; stacking needs "
        "labelled images (the stacked label is made of the three base labels)"
      )
    if len(base) == 0:
      raise DataError(f"{name}: the base dataset {base.name} is empty")
    length = max(len(base), DEFAULT_MIN_LENGTH) if length is None else int(length)
    if length < 1:
      raise DataError(f"{name}: length must be >= 1, got {length}")
    self.base, self.seed, self.base_num_classes = base, int(seed), int(base.num_classes)
    self.indices = _index_maps(len(base), length, self.seed)
    h, w, _ = base.images_shape
    super().__init__(
      name,
      (h, w, _NUM_CHANNELS),
      self.base_num_classes**_NUM_CHANNELS,
      image_size=image_size,
      crop=crop,
      channels=channels,
      convert_channels=convert_channels,
    )

  def __len__(self) -> int:
    return self.indices.shape[1]

  def _raw(self, index: int) -> tuple[np.ndarray, Any]:
    parts = [self.base[int(j)] for j in self.indices[:, index]]
    label = 0
    for part in parts:
      label = label * self.base_num_classes + int(part["label"])
    return np.concatenate([p["image"] for p in parts], axis=-1), label

  def channel_labels(self, label: int | np.ndarray) -> np.ndarray:
    """The base labels (..., 3) of stacked label(s), most significant (red channel) first."""
    label = np.asarray(label)
    k = self.base_num_classes
    return np.stack([label // k**2, (label // k) % k, label % k], axis=-1)
