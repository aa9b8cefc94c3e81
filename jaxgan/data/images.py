"""Image input pipeline: TFDS / image-folder / ``.npz`` sources batched with grain.

Two steps:

1. :func:`make_source` gives an :class:`ImageSource`, a random-access sequence
   of ``{"image": uint8 (H, W, C), "label": int32 ()}`` dicts (``label`` only
   when the source has labels), with an optional center crop, square resize
   and channel conversion applied per example.  ``name`` may be

   * a preset in :data:`DATASETS` (``digits``, ``mnist``, ``fashion_mnist``,
     ``cifar10``, ``svhn_cropped``, ``celeb_a``);
   * a path ending in ``.npz`` (arrays ``images`` uint8 NHWC or NHW, optional
     ``labels``);
   * a directory of PNG/JPEG images (class subfolders become labels);
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
import dataclasses
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxgan.errors import JaxganError

__all__ = [
  "DATASETS",
  "ArraySource",
  "BatchIterator",
  "DataError",
  "DatasetNotPreparedError",
  "DevicePrefetcher",
  "ImageFolderSource",
  "ImageSource",
  "Preset",
  "TFDSSource",
  "make_iterator",
  "make_source",
  "prefetch_to_device",
]

_ASSETS = pathlib.Path(__file__).parent / "assets"
_DIGITS_TRAIN = 1500  # digits: first 1500 examples are "train", last 297 "test".
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DataError(JaxganError, ValueError):
  """A dataset cannot be found, opened or converted as requested."""


class DatasetNotPreparedError(DataError):
  """A TFDS dataset is registered but not prepared in the given data_dir."""


@dataclasses.dataclass(frozen=True)
class Preset:
  """A named dataset: where it comes from and its default geometry.

  Attributes:
    tfds_name: TFDS name, or None for the vendored ``digits``.
    image_size: default square output size (None: native size).
    crop: center-crop size applied before resizing (None: none).
  """

  tfds_name: str | None
  image_size: int | None = None
  crop: int | None = None


DATASETS: dict[str, Preset] = {
  "digits": Preset(None),  # 8x8x1, vendored, offline.
  "mnist": Preset("mnist"),  # 28x28x1
  "fashion_mnist": Preset("fashion_mnist"),  # 28x28x1
  "cifar10": Preset("cifar10"),  # 32x32x3
  "svhn_cropped": Preset("svhn_cropped"),  # 32x32x3
  "celeb_a": Preset("celeb_a", image_size=64, crop=108),  # DCGAN convention.
}


# --------------------------------------------------------------------------
# Sources.


class ImageSource:
  """Random-access uint8 images (and labels), with crop/resize/channels applied.

  Subclasses implement ``__len__`` and ``_raw(index) -> (image, label)``.

  Attributes:
    name: what the source was made from.
    images_shape: ``(H, W, C)`` of every returned image.
    num_classes: number of label classes, or None when there are no labels.
  """

  def __init__(
    self,
    name: str,
    native_shape: tuple,
    num_classes: int | None,
    *,
    image_size: int | None = None,
    crop: int | None = None,
    channels: int | None = None,
    convert_channels: bool = False,
  ):
    self.name = name
    self.num_classes = num_classes
    h, w, c = native_shape
    if channels is None:
      channels = c
    if c not in (1, 3) or channels not in (1, 3):
      raise DataError(f"{name}: only 1 or 3 channels are supported (images have {c}, requested {channels})")
    if channels != c and not convert_channels:
      raise DataError(
        f"{name}: images have {c} channel(s) but channels={channels} "
        "was requested; pass convert_channels=True to convert "
        "(gray->RGB repeats the channel, RGB->gray takes luma)"
      )
    if crop is not None and h is not None and w is not None:
      h, w = min(crop, h), min(crop, w)
    if image_size is not None:
      h = w = image_size
    if h is None or w is None:
      raise DataError(f"{name}: images have no fixed size; pass image_size=")
    self.images_shape = (h, w, channels)
    self._crop, self._image_size, self._channels = crop, image_size, channels

  def __len__(self) -> int:
    raise NotImplementedError

  def _raw(self, index: int) -> tuple[np.ndarray, Any]:
    raise NotImplementedError

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    """Returns ``{"image": uint8 images_shape, "label": int32 ()}``."""
    if not -len(self) <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} examples")
    image, label = self._raw(int(index) % len(self))
    example = {"image": self._transform(np.asarray(image))}
    if self.num_classes is not None:
      example["label"] = np.int32(label)
    return example

  def _transform(self, image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
      image = image[..., None]
    if self._crop is not None:
      image = _center_crop(image, self._crop, self._crop)
    if self._image_size is not None and image.shape[:2] != self.images_shape[:2]:
      side = min(image.shape[:2])
      image = _center_crop(image, side, side)
      pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
      pil = pil.resize((self._image_size, self._image_size), Image.Resampling.BILINEAR)
      image = np.asarray(pil).reshape(self._image_size, self._image_size, -1)
    if image.shape[-1] != self._channels:
      if self._channels == 3:
        image = np.repeat(image, 3, axis=-1)
      else:
        image = np.asarray(Image.fromarray(image).convert("L"))[..., None]
    return np.ascontiguousarray(image, dtype=np.uint8)

  def __repr__(self) -> str:
    return (
      f"{type(self).__name__}({self.name!r}, n={len(self)}, "
      f"images_shape={self.images_shape}, num_classes={self.num_classes})"
    )


def _center_crop(image: np.ndarray, ch: int, cw: int) -> np.ndarray:
  h, w = image.shape[:2]
  top, left = max(0, round((h - ch) / 2)), max(0, round((w - cw) / 2))
  return image[top : top + ch, left : left + cw]


class ArraySource(ImageSource):
  """In-memory uint8 images (N, H, W, C) or (N, H, W), optional int labels (N,)."""

  def __init__(
    self, name: str, images: np.ndarray, labels: np.ndarray | None = None, num_classes: int | None = None, **kwargs
  ):
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
      raise DataError(f"{name}: images must be uint8 NHWC or NHW, got {images.dtype} {images.shape}")
    if images.ndim == 3:
      images = images[..., None]
    if len(images) == 0:
      raise DataError(f"{name}: no images")
    if labels is not None:
      labels = np.asarray(labels)
      if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{name}: labels must be integers shaped ({len(images)},), got {labels.dtype} {labels.shape}")
      if num_classes is None:
        num_classes = int(labels.max()) + 1
    self._images, self._labels = images, labels
    super().__init__(name, images.shape[1:], num_classes if labels is not None else None, **kwargs)

  def __len__(self) -> int:
    return len(self._images)

  def _raw(self, index):
    return self._images[index], None if self._labels is None else self._labels[index]


class ImageFolderSource(ImageSource):
  """PNG/JPEG files of one size, decoded lazily with Pillow.

  If ``root`` holds image files directly they are the (unlabelled) dataset.
  Otherwise each subfolder (sorted by name) is a class, labelled 0, 1, ...
  in that order, holding images anywhere below it.  Images are read as
  grayscale when all of them are grayscale, else as RGB (alpha dropped).
  """

  def __init__(self, root: str | os.PathLike, **kwargs):
    root = pathlib.Path(root)
    direct = _image_files(root, recursive=False)
    if direct:
      files, labels, self.class_names = direct, None, None
    else:
      classes = [(d.name, _image_files(d, recursive=True)) for d in sorted(root.iterdir()) if d.is_dir()]
      classes = [(n, f) for n, f in classes if f]
      self.class_names = [n for n, _ in classes]
      files = [p for _, f in classes for p in f]
      labels = [i for i, (_, f) in enumerate(classes) for _ in f]
    if not files:
      raise DataError(
        f"image folder {root} has no {'/'.join(_IMAGE_SUFFIXES)} images (directly or in class subfolders)"
      )
    sizes, gray = {}, True
    for path in files:
      with Image.open(path) as im:
        sizes.setdefault(im.size, path)
        gray &= im.mode in ("1", "L", "LA")
    if len(sizes) > 1:
      (s0, p0), (s1, p1) = list(sizes.items())[:2]
      raise DataError(
        f"image folder {root} mixes image sizes: {p0.name} is "
        f"{s0[1]}x{s0[0]} but {p1.name} is {s1[1]}x{s1[0]}; "
        "all images must have the same size"
      )
    ((w, h),) = sizes
    self._files, self._labels, self._mode = files, labels, "L" if gray else "RGB"
    super().__init__(str(root), (h, w, 1 if gray else 3), None if labels is None else len(self.class_names), **kwargs)

  def __len__(self) -> int:
    return len(self._files)

  def _raw(self, index):
    with Image.open(self._files[index]) as im:
      image = np.asarray(im.convert(self._mode))
    return image, None if self._labels is None else self._labels[index]


def _image_files(folder: pathlib.Path, recursive: bool) -> list[pathlib.Path]:
  paths = folder.rglob("*") if recursive else folder.iterdir()
  return sorted(p for p in paths if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)


class TFDSSource(ImageSource):
  """A TFDS image dataset read with ``tfds.data_source`` (no TensorFlow needed)."""

  def __init__(self, name: str, split: str = "train", data_dir: str | None = None, **kwargs):
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
      raise DataError(
        f"unknown dataset {name!r}: not a preset ({', '.join(DATASETS)}), "
        "not a .npz file or image folder, and not a registered TFDS dataset "
        "name (any TFDS image dataset name works)"
      ) from None
    except ValueError as e:  # e.g. an unknown config or version.
      raise DataError(f"cannot open TFDS dataset {name!r}: {_first_line(e)}") from e
    features = builder.info.features
    image = features["image"] if "image" in features else None
    if not isinstance(image, tfds.features.Image) or image.np_dtype != np.uint8:
      raise DataError(f"TFDS dataset {name!r} has no uint8 'image' feature (features: {', '.join(features)})")
    label = features["label"] if "label" in features else None
    try:
      self._data = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # tfds raises a variety of types here.
      if not builder.is_prepared():
        raise DatasetNotPreparedError(
          f"TFDS dataset {name!r} is not prepared at {builder.data_dir}; preparing "
          "it needs network access and `pip install tensorflow`, then: tfds build "
          f"{name} --data_dir={builder.data_dir_root} --file_format=array_record"
        ) from e
      raise DataError(
        f"cannot open TFDS dataset {name!r} split {split!r} at "
        f"{builder.data_dir} (random access needs the array_record "
        f"format): {_first_line(e)}"
      ) from e
    num_classes = getattr(label, "num_classes", None) if label is not None else None
    if label is not None and num_classes is None:
      raise DataError(f"TFDS dataset {name!r}: 'label' is not a ClassLabel")
    super().__init__(name, image.shape, num_classes, **kwargs)

  def __len__(self) -> int:
    return len(self._data)

  def _raw(self, index):
    example = self._data[index]
    return example["image"], example.get("label")


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def make_source(
  name: str,
  split: str = "train",
  data_dir: str | None = None,
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
    image_size: square output size. Non-square images are center-cropped to
      their short side first. Default: the preset's size, else native.
    channels: 1 or 3 output channels (default: native).
    convert_channels: allow converting gray->RGB (repeat) or RGB->gray
      (luma) when ``channels`` differs from the native count.

  Raises:
    DataError: unknown name, bad files, impossible channel request.
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
  if name.startswith("stacked_") and not is_file_source:  # Stacked MNIST and friends.
    from jaxgan.data import stacked  # stacked.py imports this module.

    return stacked.make_stacked_source(name, split, data_dir, **kwargs)
  if is_file_source and name.endswith(".npz"):
    if not os.path.isfile(name):
      raise DataError(f"npz file {name} does not exist")
    with np.load(name) as z:
      if "images" not in z:
        raise DataError(f"npz file {name} has no 'images' array (has: {', '.join(z)})")
      labels = z["labels"] if "labels" in z else None
      return ArraySource(name, z["images"], labels, **kwargs)
  if is_file_source:
    return ImageFolderSource(name, **kwargs)
  return TFDSSource(preset.tfds_name, split, data_dir, **kwargs)


# --------------------------------------------------------------------------
# Batching.


def _to_float(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  out = dict(batch, image=batch["image"].astype(np.float32) / np.float32(127.5) - 1.0)
  if "label" in out:
    out["label"] = out["label"].astype(np.int32)
  return out


class BatchIterator(Iterator):
  """Checkpointable iterator of ``{"image": float32, "label": int32}`` batches.

  Images are in [-1, 1], shaped ``batch_shape + images_shape`` where
  ``batch_shape`` is ``(batch_size,)`` or ``(n_critic, batch_size)``.
  Use :func:`make_iterator` to build one.

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


def make_iterator(
  source: ImageSource,
  batch_size: int,
  seed: int,
  n_critic: int | None = None,
  shard_index: int | None = None,
  shard_count: int | None = None,
  num_epochs: int | None = None,
  num_threads: int = 2,
  prefetch: int = 4,
) -> BatchIterator:
  """Batches ``source`` into a shuffled, sharded, checkpointable stream.

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
  """
  return BatchIterator(source, batch_size, seed, n_critic, shard_index, shard_count, num_epochs, num_threads, prefetch)


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
