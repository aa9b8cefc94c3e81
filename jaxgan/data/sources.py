"""Random-access image sources: arrays, image folders and TFDS ``data_source`` datasets.

* `ImageSource` -- the base: a sequence of ``{"image": uint8 (H, W, C),
  "label": int32 ()}`` dicts with an optional center crop, square resize and
  channel conversion applied per example;
* `ArraySource` (numpy arrays, e.g. a ``.npz`` or the vendored digits),
  `ImageFolderSource` (PNG/JPEG files, class subfolders as labels) and
  `TFDSSource` (``tfds.data_source`` over an ``array_record`` dataset; nothing
  is downloaded);
* `image_folder_files` / `decode_image_files` -- the listing and the one
  decoding pass of an image folder (shared with the paired A|B folders of
  `jaxgan.data.paired`);
* `read_npz` / `npz_images` -- ``.npz`` arrays read without pickles, and
  uint8 or float images brought to uint8;
* `DataError` / `DatasetNotPreparedError` / `MixedImageSizesError` -- what a
  source that cannot be opened raises (one line, the fix named).

Resizing (``image_size``): each image is center-cropped to a square of its
short side, then resized to ``image_size`` x ``image_size`` with Pillow's
bilinear filter, which is antialiased when downscaling (its support widens
with the scale factor). Aspect ratio is kept; the long side's ends are cut
(like torchvision's ``Resize(N)`` then ``CenterCrop(N)``).

`jaxgan.data.images.make_source` chooses the source for a dataset name.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxgan.errors import JaxganError

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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


class DataError(JaxganError, ValueError):
  """A dataset cannot be found, opened or converted as requested."""


class DatasetNotPreparedError(DataError):
  """A TFDS dataset is registered but not prepared in the given data_dir."""


class MixedImageSizesError(DataError):
  """An image folder holds images of different sizes and no target size was given.

  Attributes:
    problem: the message without its fix (which folder, two files and their sizes).
  """

  def __init__(self, problem: str, fix: str):
    super().__init__(f"{problem}; {fix}")
    self.problem = problem


# --------------------------------------------------------------------------
# Sources.


class ImageSource:
  """Random-access uint8 images (and labels), with crop/resize/channels applied.

  Per example, in this order: the optional center ``crop``; when
  ``image_size`` is given and the image is not already that size, a center
  crop to a square of its short side and a bilinear resize to ``image_size``
  x ``image_size`` (the module's resize rule); the channel conversion (gray ->
  RGB repeats the channel, RGB -> gray takes Pillow's ITU-R 601-2 luma).

  Subclasses implement ``__len__`` and ``_raw(index) -> (image, label)``;
  ``native_shape`` may have ``None`` height and width (images of varying
  size), which then needs ``image_size``.

  Attributes:
    name: what the source was made from.
    images_shape: ``(H, W, C)`` of every returned image.
    num_classes: number of label classes, or None when there are no labels.
    class_names: the name of each label (index = label) when the dataset
      names its classes (image-folder subfolders, TFDS ClassLabel names), else None.
  """

  class_names: list[str] | None = None

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


MAX_INFERRED_CLASSES = 65536


def check_labels(name: str, labels: np.ndarray, num_classes: int | None) -> int:
  """The number of classes of ``labels``, after checking they lie in [0, num_classes) (one `DataError` if not).

  Without ``num_classes`` it is max(labels) + 1, at most `MAX_INFERRED_CLASSES`
  (a stray huge label would otherwise make every per-class count allocate it).
  """
  low, high = int(labels.min()), int(labels.max())
  if num_classes is None:
    if high + 1 > MAX_INFERRED_CLASSES:
      raise DataError(
        f"{name}: a label is {high}, which would make {high + 1} classes: labels must be the class ids 0 .. K-1"
      )
    num_classes = high + 1
  if low < 0 or high >= num_classes:
    bad = low if low < 0 else high
    raise DataError(f"{name}: label {bad} is outside [0, {num_classes}): labels must be the class ids 0 .. K-1")
  return num_classes


def read_npz(path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
  """The arrays ``required`` (and those of ``optional`` present) of the ``.npz`` at ``path``, read without pickles.

  A missing or unreadable file, object arrays, a file that is not an ``.npz``
  and missing arrays are one `DataError` each, naming the file.
  """
  if not os.path.isfile(path):
    raise DataError(f"npz file {path} does not exist")
  hint = "save plain numeric arrays with numpy.savez (no object arrays, no pickles)"
  try:
    with np.load(path, allow_pickle=False) as z:
      names = list(z.files) if hasattr(z, "files") else []
      if not hasattr(z, "files"):
        raise ValueError("it holds a single array, not named arrays")
      missing = [k for k in required if k not in names]
      if missing:
        raise DataError(f"npz file {path} has no {missing[0]!r} array (has: {', '.join(names) or 'none'})")
      return {k: np.asarray(z[k]) for k in (*required, *optional) if k in names}
  except DataError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    reason = "not an .npz archive" if "pickled" in str(e) else first_line(e)
    raise DataError(f"npz file {path} cannot be read ({reason}): {hint}") from None


FLOAT_RANGES = "[0, 1] (read as uint8 round(255 x)) or [-1, 1] (read as round(127.5 (x + 1)))"


def npz_images(path: str, key: str, images: np.ndarray) -> np.ndarray:
  """The image array ``key`` of the ``.npz`` at ``path`` as uint8: uint8 as is, float mapped onto [0, 255].

  Float images (any float dtype) must be finite and lie in [0, 1] or [-1, 1]:

  * no value below 0: the range is [0, 1], ``u = round(255 x)``;
  * any value below 0: the range is [-1, 1], ``u = round(127.5 (x + 1))``
    (the inverse of `jaxgan.data.images.to_float`);

  rounding half to even, computed in float64. NaN/Inf or a value outside
  [-1, 1] is one `DataError` naming the file, the array, the range found and
  the ranges accepted. Other dtypes are returned unchanged (the source then
  refuses anything but uint8).
  """
  if not np.issubdtype(images.dtype, np.floating):
    return images
  where = f"npz file {path}: float array {key!r}"
  if not np.isfinite(images).all():
    bad = "NaN" if np.isnan(images).any() else "Inf"
    raise DataError(f"{where} holds {bad}; float images must be finite and lie in {FLOAT_RANGES}")
  low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
  if low < -1.0 or high > 1.0:
    raise DataError(f"{where} has values in [{low:.6g}, {high:.6g}]; float images must lie in {FLOAT_RANGES}")
  x = images.astype(np.float64)
  scaled = x * 255.0 if low >= 0.0 else (x + 1.0) * 127.5
  return np.rint(scaled).astype(np.uint8)


class ArraySource(ImageSource):
  """In-memory uint8 images (N, H, W, C) or (N, H, W), optional int labels (N,).

  (A ``.npz`` of float images is brought to uint8 by `npz_images` first.)
  """

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
      num_classes = check_labels(name, labels, num_classes)
    self._images, self._labels = images, labels
    super().__init__(name, images.shape[1:], num_classes if labels is not None else None, **kwargs)

  def __len__(self) -> int:
    return len(self._images)

  def _raw(self, index):
    return self._images[index], None if self._labels is None else self._labels[index]


class ImageFolderSource(ImageSource):
  """PNG/JPEG files, decoded lazily with Pillow.

  If ``root`` holds image files directly they are the (unlabelled) dataset.
  Otherwise each subfolder (sorted by name) is a class, labelled 0, 1, ...
  in that order, holding images anywhere below it.  Images are read as
  grayscale when all of them are grayscale, else as RGB (alpha dropped,
  palette and other modes converted by Pillow).

  Every file is decoded once when the source is opened, so a bad one fails
  then, named. Without ``image_size`` all images must have one size (else a
  `MixedImageSizesError` naming two files of different sizes); with it,
  images of any sizes are each brought to ``image_size`` x ``image_size`` by
  the module's resize rule (center crop to a square of the short side, then
  bilinear), so a folder of mixed sizes and aspect ratios is fine.
  """

  def __init__(self, root: str | os.PathLike, **kwargs):
    root = pathlib.Path(root)
    files, labels, self.class_names = image_folder_files(root)
    sizes, gray = decode_image_files(root, files, mixed_sizes_ok=kwargs.get("image_size") is not None)
    ((h, w),) = sizes if len(sizes) == 1 else ((None, None),)
    self._files, self._labels, self._mode = files, labels, "L" if gray else "RGB"
    super().__init__(str(root), (h, w, 1 if gray else 3), None if labels is None else len(self.class_names), **kwargs)

  def __len__(self) -> int:
    return len(self._files)

  def _raw(self, index):
    with Image.open(self._files[index]) as im:
      image = np.asarray(im.convert(self._mode))
    return image, None if self._labels is None else self._labels[index]


def image_folder_files(root: pathlib.Path) -> tuple[list[pathlib.Path], list[int] | None, list[str] | None]:
  """``(files, labels, class_names)`` of an image folder (see `ImageFolderSource`); no images is one `DataError`."""
  direct = _image_files(root, recursive=False)
  if direct:
    return direct, None, None
  classes = [(d.name, _image_files(d, recursive=True)) for d in sorted(root.iterdir()) if d.is_dir()]
  classes = [(n, f) for n, f in classes if f]
  files = [p for _, f in classes for p in f]
  if not files:
    raise DataError(f"image folder {root} has no {'/'.join(_IMAGE_SUFFIXES)} images (directly or in class subfolders)")
  return files, [i for i, (_, f) in enumerate(classes) for _ in f], [n for n, _ in classes]


def decode_image_files(
  root: pathlib.Path, files: list[pathlib.Path], mixed_sizes_ok: bool
) -> tuple[dict[tuple[int, int], pathlib.Path], bool]:
  """Decodes every file once; returns ``{(height, width): first file of that size}`` and whether all are grayscale.

  A file that cannot be decoded is one `DataError` naming it. Unless
  ``mixed_sizes_ok``, a second size is a `MixedImageSizesError` naming the
  first file and the first one of another size (raised as soon as it is
  seen, before the rest are decoded).
  """
  sizes, gray = {}, True
  for path in files:
    try:
      with Image.open(path) as im:
        (w, h), mode = im.size, im.mode
        mixed = not mixed_sizes_ok and bool(sizes) and (h, w) not in sizes
        if not mixed:
          im.load()
    except (OSError, SyntaxError, ValueError) as e:
      raise DataError(f"cannot decode image {path} ({first_line(e)}): remove or replace the file") from None
    if mixed:
      ((h0, w0), first), *_ = sizes.items()
      raise MixedImageSizesError(
        f"image folder {root} mixes image sizes: {first.name} is {h0}x{w0} but {path.name} is {h}x{w}",
        "pass --image_size=N (image_size=N) to resize every image to NxN at load "
        "(center crop to a square, then bilinear)",
      )
    sizes.setdefault((h, w), path)
    gray &= mode in ("1", "L", "LA")
  return sizes, gray


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
      raise DataError(f"cannot open TFDS dataset {name!r}: {first_line(e)}") from e
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
        f"format): {first_line(e)}"
      ) from e
    num_classes = getattr(label, "num_classes", None) if label is not None else None
    if label is not None and num_classes is None:
      raise DataError(f"TFDS dataset {name!r}: 'label' is not a ClassLabel")
    self.class_names = list(getattr(label, "names", None) or []) or None
    super().__init__(name, image.shape, num_classes, **kwargs)

  def __len__(self) -> int:
    return len(self._data)

  def _raw(self, index):
    example = self._data[index]
    return example["image"], example.get("label")


def first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__
