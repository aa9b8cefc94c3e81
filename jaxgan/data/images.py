"""Image input pipeline: TFDS / image-folder / ``.npz`` sources batched with grain.

Two steps:

1. :func:`make_source` gives an :class:`ImageSource`, a random-access sequence
   of ``{"image": uint8 (H, W, C), "label": int32 ()}`` dicts (``label`` only
   when the source has labels), with an optional center crop, square resize
   and channel conversion applied per example.  ``name`` may be

   * a preset in :data:`DATASETS` (``digits``, ``mnist``, ``fashion_mnist``,
     ``cifar10``, ``svhn_cropped``, ``celeb_a``);
   * a path ending in ``.npz`` (array ``images``, NHWC or NHW, uint8 in
     [0, 255] or float in [0, 1] or [-1, 1] (converted to uint8 by
     `jaxgan.data.sources.npz_images`); optional integer ``labels``);
   * a directory of PNG/JPEG images (class subfolders become labels), of one
     size, or of any sizes when ``image_size`` is given (each resized);
   * any other TFDS image dataset name (image key ``image``, label key
     ``label`` when present), read with ``tfds.data_source`` from a data_dir
     prepared in the ``array_record`` format.  Nothing is ever downloaded.

   ``digits`` (the UCI 8x8 hand-written digits vendored in
   ``jaxgan/data/assets/digits.npz``) works offline; its ``train`` split is the
   first 1500 examples, ``test`` the last 297.

   ``stacked_<base>`` (``stacked_mnist``, ``stacked_digits``, ...) stacks three
   independently drawn images of a grayscale labelled base into one RGB image
   with 1,000 classes (Stacked MNIST; see :mod:`jaxgan.data.stacked`).

2. :func:`make_iterator` gives a :class:`BatchIterator` of float32 batches in
   [-1, 1], built from grain ``MapDataset`` transformations: per-process shard,
   shuffle by seed (reshuffled each epoch), drop-remainder batches (each epoch
   batched separately), optional leading ``n_critic`` axis, repeat.  The
   stream is a pure function of (seed, position), so ``get_state()`` /
   ``set_state()`` resume it bit-exactly.

:func:`prefetch_to_device` wraps an iterator and keeps the next batches on
device(s) ahead of time.
"""

from __future__ import annotations

import collections
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import grain
import jax
import numpy as np

from jaxgan.data import stacked
from jaxgan.data.sources import (
  DATASETS,
  ArraySource,
  DataError,
  DatasetNotPreparedError,
  ImageFolderSource,
  ImageSource,
  MixedImageSizesError,
  Preset,
  TFDSSource,
  first_line,
  npz_images,
  read_npz,
)

__all__ = [
  "DATASETS",
  "ArraySource",
  "BatchIterator",
  "DataError",
  "DatasetNotPreparedError",
  "DevicePrefetcher",
  "ImageFolderSource",
  "ImageSource",
  "MixedImageSizesError",
  "Preset",
  "TFDSSource",
  "make_iterator",
  "make_source",
  "prefetch_to_device",
]

_ASSETS = pathlib.Path(__file__).parent / "assets"
_DIGITS_TRAIN = 1500  # digits: first 1500 examples are "train", last 297 "test".
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def make_source(
  name: str,
  split: str = "train",
  data_dir: str | None = None,
  *,
  image_size: int | None = None,
  channels: int | None = None,
  convert_channels: bool = False,
) -> ImageSource:
  """Opens an image dataset as an :class:`ImageSource`.

  Args:
    name: a preset in :data:`DATASETS`, ``stacked_<base>`` (Stacked MNIST,
      :mod:`jaxgan.data.stacked`), a ``.npz`` path, an image-folder path, or
      any TFDS image dataset name (checked in that order).
    split: ``"train"`` or ``"test"`` for ``digits`` (and ``stacked_<base>``:
      the base's split); any TFDS split
      (e.g. ``"train[:90%]"``) for TFDS; must be ``"train"`` for ``.npz``
      files and image folders, which have a single split.
    data_dir: TFDS data directory (default: TFDS's own default). Never
      downloaded into; the dataset must already be prepared there.
    image_size: square output size: each image not already that size is
      center-cropped to a square of its short side, then resized (bilinear,
      antialiased when downscaling). Default: the preset's size, else native.
      An image folder of mixed sizes needs it.
    channels: 1 or 3 output channels (default: native).
    convert_channels: allow converting gray->RGB (repeat) or RGB->gray
      (luma) when ``channels`` differs from the native count.

  Raises:
    DataError: unknown name, bad files (a float ``.npz`` outside [0, 1] and
      [-1, 1], NaN or Inf), impossible channel request.
    MixedImageSizesError: an image folder mixes sizes and ``image_size`` is
      not given.
    DatasetNotPreparedError: TFDS dataset not prepared in ``data_dir``.
  """
  preset = DATASETS.get(name, Preset(name))
  kwargs = dict(
    image_size=image_size or preset.image_size, crop=preset.crop, channels=channels, convert_channels=convert_channels
  )
  is_file_source = name not in DATASETS and (name.endswith(".npz") or os.path.isdir(name))
  if is_file_source and split != "train":
    raise DataError(f"{name}: has a single split 'train', got split={split!r}")
  if name == "digits":
    if split not in ("train", "test"):
      raise DataError(f"digits: split must be 'train' or 'test', got {split!r}")
    with np.load(_ASSETS / "digits.npz") as z:
      part = slice(None, _DIGITS_TRAIN) if split == "train" else slice(_DIGITS_TRAIN, None)
      return ArraySource("digits", z["images"][part], z["labels"][part], 10, **kwargs)
  if name.startswith(stacked.STACKED_PREFIX) and not is_file_source:  # Stacked MNIST and friends.
    return _stacked_source(name, split, data_dir, **kwargs)
  if is_file_source and name.endswith(".npz"):
    arrays = read_npz(name, ("images",), ("labels",))
    return ArraySource(name, npz_images(name, "images", arrays["images"]), arrays.get("labels"), **kwargs)
  if is_file_source:
    return ImageFolderSource(name, **kwargs)
  return TFDSSource(preset.tfds_name, split, data_dir, **kwargs)


def _stacked_source(
  name: str,
  split: str = "train",
  data_dir: str | None = None,
  *,
  seed: int = 0,
  length: int | None = None,
  **kwargs: Any,
) -> stacked.StackedSource:
  """Opens ``stacked_<base>``: ``<base>``'s ``split`` stacked three times (`jaxgan.data.stacked.StackedSource`).

  Args:
    name: ``stacked_<base>`` where ``<base>`` is any name
      `jaxgan.data.images.make_source` accepts that gives 1-channel labelled
      images (``stacked_mnist``, ``stacked_fashion_mnist``, ``stacked_digits``).
    split: the base's split (``train`` / ``test`` map to the base's own).
    data_dir: TFDS data directory of the base.
    seed, length: as `jaxgan.data.stacked.StackedSource`.
    **kwargs: ``image_size``, ``crop``, ``channels``, ``convert_channels``
      for the stacked image (the base is read at its native size).

  Raises:
    DataError: not a stacked name, the base cannot be opened (one line naming
      the base), or the base is not grayscale / not labelled.
    DatasetNotPreparedError: the TFDS base dataset is not prepared.
  """
  base = stacked.base_name(name)
  if base is None:
    raise DataError(
      f"{name!r} is not a stacked dataset name: use {stacked.STACKED_PREFIX}<base>, e.g. stacked_mnist or "
      "stacked_digits"
    )
  if stacked.base_name(base) is not None:
    raise DataError(f"{name}: the base dataset {base} is itself stacked; use a grayscale base")
  try:
    source = make_source(base, split, data_dir)
  except DataError as e:
    # Same type (DatasetNotPreparedError stays one), one line, naming the stacked dataset.
    raise type(e)(f"{name}: cannot open the base dataset {base!r}: {first_line(e)}") from e
  return stacked.StackedSource(source, seed=seed, length=length, name=name, **kwargs)


# --------------------------------------------------------------------------
# Batching.


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1], the range every model and metric works in."""
  return np.asarray(images, np.float32) / np.float32(127.5) - 1.0


def _to_float(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  out = dict(batch, image=to_float(batch["image"]))
  if "label" in out:
    out["label"] = out["label"].astype(np.int32)
  return out


class BatchIterator(Iterator):
  """Checkpointable iterator of ``{"image": float32, "label": int32}`` batches.

  Images are in [-1, 1], shaped ``batch_shape + images_shape`` where
  ``batch_shape`` is ``(batch_size,)`` or ``(n_critic, batch_size)``.
  :func:`make_iterator` builds one.

  Args:
    source: from :func:`make_source`.
    batch_size: examples per batch (per process).
    seed: shuffle seed; each epoch is reshuffled from it.
    n_critic: if given, batches get a leading axis of this size (arrays
      ``(n_critic, batch_size, H, W, C)``) for a scan-fused critic update.
    shard_index, shard_count: this process's shard (default:
      ``jax.process_index()`` of ``jax.process_count()``). Shards are
      disjoint, equal-sized, strided; up to ``shard_count - 1`` examples
      are dropped.
    num_epochs: stop after this many epochs (default: repeat forever).
    num_threads, prefetch: grain read threads and batches buffered ahead
      on the host.

  Attributes:
    batch_shape: leading axes of every array.
    steps_per_epoch: batches per epoch in this shard.
    step: batches yielded so far.
  """

  def __init__(
    self,
    source: ImageSource,
    batch_size: int,
    seed: int,
    *,
    n_critic: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    num_epochs: int | None = None,
    num_threads: int = 2,
    prefetch: int = 4,
  ):
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    if not 0 <= shard_index < shard_count:
      raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
    self.batch_shape = (batch_size,) if n_critic is None else (n_critic, batch_size)
    self._seed, self._shard = int(seed), (shard_index, shard_count)
    # Equal-sized strided shards, so every process sees the same number of steps.
    per_shard = len(source) // shard_count
    ds = grain.MapDataset.source(source)[shard_index : per_shard * shard_count : shard_count]
    # Per-epoch reshuffle: shuffle sees index e * len + i for epoch e, and
    # batch/repeat keep batches inside an epoch (drop_remainder per epoch).
    ds = ds.shuffle(seed=self._seed).batch(batch_size, drop_remainder=True)
    if n_critic is not None:
      ds = ds.batch(n_critic, drop_remainder=True)
    self.steps_per_epoch = len(ds)
    if self.steps_per_epoch == 0:
      raise DataError(
        f"{source.name}: shard {shard_index}/{shard_count} has {per_shard} "
        f"examples, fewer than one batch of shape {self.batch_shape}"
      )
    self._dataset = ds.repeat(num_epochs).map(_to_float)
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    self._iter = iter(self._dataset.to_iter_dataset(options))
    self.step = 0

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._iter)
    self.step += 1
    return batch

  @property
  def epoch(self) -> int:
    """The epoch the next batch comes from."""
    return self.step // self.steps_per_epoch

  def get_state(self) -> dict[str, Any]:
    """A small JSON-serialisable dict locating the next batch."""
    return {
      "step": self.step,
      "epoch": self.epoch,
      "seed": self._seed,
      "batch_shape": list(self.batch_shape),
      "shard": list(self._shard),
      "grain": self._iter.get_state(),
    }

  def set_state(self, state: dict[str, Any]) -> None:
    """Continues exactly where the iterator that produced ``state`` was."""
    mine = self.get_state()
    for key in ("seed", "batch_shape", "shard"):
      if state[key] != mine[key]:
        raise DataError(f"iterator state has {key}={state[key]} but this iterator has {key}={mine[key]}")
    self._iter.set_state(state["grain"])
    self.step = int(state["step"])

  def close(self) -> None:
    """Stops grain's prefetch threads."""
    self._iter.close()


def make_iterator(source: ImageSource, batch_size: int, seed: int, **options: Any) -> BatchIterator:
  """Batches ``source`` into a shuffled, sharded, checkpointable stream.

  ``batch_size`` examples per batch (per process), shuffled by ``seed`` and
  reshuffled every epoch; ``options`` are the keyword arguments of
  :class:`BatchIterator` (``n_critic``, ``shard_index`` / ``shard_count``,
  ``num_epochs``, ``num_threads``, ``prefetch``).
  """
  return BatchIterator(source, batch_size, seed, **options)


# --------------------------------------------------------------------------
# Device prefetch.


class DevicePrefetcher(Iterator):
  """Keeps the next ``size`` batches on device; checkpointable like its input."""

  def __init__(self, iterator: BatchIterator, size: int = 2, sharding: jax.sharding.Sharding | None = None):
    if size < 1:
      raise ValueError(f"size must be >= 1, got {size}")
    self._it, self._size, self._sharding = iterator, size, sharding
    self._queue = collections.deque()  # (state before the batch, device batch)

  def _put(self, batch):
    if self._sharding is not None and jax.process_count() > 1:
      # Each process holds only its shard of the global batch.
      return jax.tree.map(lambda x: jax.make_array_from_process_local_data(self._sharding, x), batch)
    return jax.device_put(batch, self._sharding)

  def _fill(self):
    while len(self._queue) < self._size:
      state = self._it.get_state()
      try:
        batch = next(self._it)
      except StopIteration:
        return
      self._queue.append((state, self._put(batch)))

  def __next__(self):
    self._fill()
    if not self._queue:
      raise StopIteration
    batch = self._queue.popleft()[1]
    self._fill()  # Start the next transfers before the caller computes.
    return batch

  def get_state(self) -> dict[str, Any]:
    """The state of the underlying iterator at the next batch to be returned."""
    return self._queue[0][0] if self._queue else self._it.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    """Drops prefetched batches and restores the underlying iterator."""
    self._queue.clear()
    self._it.set_state(state)


def prefetch_to_device(
  iterator: BatchIterator, size: int = 2, sharding: jax.sharding.Sharding | None = None
) -> DevicePrefetcher:
  """Wraps ``iterator`` so that the next ``size`` batches are already on device.

  Args:
    iterator: e.g. a :class:`BatchIterator`.
    size: batches kept in flight.
    sharding: where to put every array, e.g. a batch-sharded
      ``NamedSharding(mesh, P("data"))`` (``P(None, "data")`` with an
      ``n_critic`` axis). None: the default device. In multi-process runs
      each process's batch is its local part of the global array.
  """
  return DevicePrefetcher(iterator, size, sharding)
