"""Image-to-image data: paired sources (Pix2Pix) and unpaired ones (CycleGAN).

Sources:

* :class:`PairedArraySource` -- aligned uint8 arrays ``a`` (inputs) and ``b``
  (targets) of equal length.
* :class:`PairedFolderSource` -- a folder of side-by-side ``A|B`` images (the
  Pix2Pix ``facades`` / ``maps`` / ``edges2shoes`` format: one file holds the
  two aligned images next to each other), each half resized to ``image_size``
  (files may differ in size).
* :func:`digit_edge_pairs` -- a tiny offline paired set built here from the
  vendored 8x8 digits: A = the digit upsampled (bicubic) to 32x32, B = its
  outline (a ring 2 px wide just outside the stroke). Deterministic.
* :func:`make_paired_source` / :func:`make_unpaired_sources` -- open one of
  the above, a ``.npz`` with arrays ``a`` and ``b``, a CycleGAN-style folder
  (``trainA``/``trainB``/``testA``/``testB`` subfolders), or a TFDS
  ``cycle_gan/*`` dataset (splits ``trainA``, ``trainB``, ``testA``, ``testB``)
  through :func:`jaxgan.data.images.make_source`.

Iterators (checkpointable, for :func:`jaxgan.trainer.fit`):

* :class:`PairedIterator` -- ``{"a": inputs, "b": targets}`` float32 batches in
  [-1, 1]. The pair is stored as one image with ``C_a + C_b`` channels, so it is
  shuffled and batched by one :class:`jaxgan.data.images.BatchIterator` and the
  halves always stay aligned.
* :class:`UnpairedIterator` -- ``{"a", "b"}`` from two independent shuffled
  streams (seeds ``seed`` and ``seed + 1``).

The input pipeline itself is deterministic: the random jitter (resize, random
crop, mirror) of both papers happens inside the jitted train steps of
`jaxgan.families.pix2pix` / ``cyclegan`` (`jaxgan.augment`), keyed by ``fold_in(state.key, state.step)``.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np
from PIL import Image

from jaxgan.data import images as images_lib
from jaxgan.data import sources
from jaxgan.data.images import DataError

__all__ = [
  "DIGIT_EDGES",
  "PairedArraySource",
  "PairedFolderSource",
  "PairedIterator",
  "UnpairedIterator",
  "digit_edge_pairs",
  "load_image_files",
  "make_paired_source",
  "make_unpaired_sources",
]

#: Name of the offline digits -> outlines set.
DIGIT_EDGES = "digits_edges"
_DIRECTIONS = ("AtoB", "BtoA")


# --------------------------------------------------------------------------
# The offline digits -> outline pairs.


def _dilate(mask: np.ndarray) -> np.ndarray:
  """Binary dilation of (N, H, W) masks by a 3x3 square."""
  h, w = mask.shape[1:]
  padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
  out = np.zeros_like(mask)
  for dy in range(3):
    for dx in range(3):
      out |= padded[:, dy : dy + h, dx : dx + w]
  return out


def digit_edge_pairs(split: str = "train", image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
  """The offline paired set: (digits, outlines), uint8 arrays (N, S, S, 1).

  A: each vendored 8x8 digit (``jaxgan/data/assets/digits.npz``, ``train`` =
  first 1500, ``test`` = last 297) resized to ``image_size`` with bicubic
  interpolation, a soft gray stroke on black.
  B: the stroke's outline, ``dilate(dilate(m)) & ~m`` for the mask
  ``m = A > 127`` (3x3 dilations): a white ring 2 px wide hugging the stroke
  from outside, black elsewhere, including inside the stroke.

  The mapping is local but not trivial: it needs the stroke's extent, a
  threshold and a morphological operation; A and B differ by ~0.82 in mean
  absolute value on [-1, 1]. Pure numpy/Pillow, deterministic.
  """
  source = images_lib.make_source("digits", split=split)
  digits = np.stack([source[i]["image"][..., 0] for i in range(len(source))])
  a = np.stack(
    [np.asarray(Image.fromarray(d).resize((image_size, image_size), Image.Resampling.BICUBIC)) for d in digits]
  )
  mask = a > 127
  outline = _dilate(_dilate(mask)) & ~mask
  b = np.where(outline, 255, 0).astype(np.uint8)
  return a[..., None], b[..., None]


# --------------------------------------------------------------------------
# Paired sources: random access to {"image": uint8 (H, W, C_a + C_b)}.


class _PairedSource:
  """Base of paired sources: items are the pair stacked on the channel axis.

  Attributes:
    name: where the pairs come from.
    shape_a, shape_b: (H, W, C) of inputs and targets.
    images_shape: (H, W, C_a + C_b), what a `BatchIterator` batches.
  """

  def __init__(self, name: str, shape_a: tuple, shape_b: tuple):
    if shape_a[:2] != shape_b[:2]:
      raise DataError(
        f"{name}: inputs are {shape_a[0]}x{shape_a[1]} but targets "
        f"{shape_b[0]}x{shape_b[1]}; paired images must have the same size"
      )
    self.name, self.shape_a, self.shape_b = name, tuple(shape_a), tuple(shape_b)
    self.images_shape = tuple(shape_a[:2]) + (shape_a[2] + shape_b[2],)
    self.num_classes = None

  def __len__(self) -> int:
    raise NotImplementedError

  def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) uint8 images of example ``index``."""
    raise NotImplementedError

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not -len(self) <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} pairs")
    a, b = self.pair(int(index) % len(self))
    return {"image": np.concatenate([a, b], axis=-1)}

  def arrays(self) -> tuple[np.ndarray, np.ndarray]:
    """All pairs as two uint8 arrays (for evaluation on small sets)."""
    pairs = [self.pair(i) for i in range(len(self))]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

  def __repr__(self) -> str:
    return f"{type(self).__name__}({self.name!r}, n={len(self)}, a={self.shape_a}, b={self.shape_b})"


class PairedArraySource(_PairedSource):
  """Aligned uint8 arrays: inputs ``a`` and targets ``b``, (N, H, W, C) or (N, H, W)."""

  def __init__(self, name: str, a: np.ndarray, b: np.ndarray):
    a, b = (np.asarray(x) for x in (a, b))
    for label, x in (("inputs", a), ("targets", b)):
      if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise DataError(f"{name}: {label} must be uint8 NHWC or NHW, got {x.dtype} {x.shape}")
    a = a[..., None] if a.ndim == 3 else a
    b = b[..., None] if b.ndim == 3 else b
    if len(a) != len(b) or len(a) == 0:
      raise DataError(f"{name}: need equally many inputs and targets (> 0), got {len(a)} and {len(b)}")
    self._a, self._b = a, b
    super().__init__(name, a.shape[1:], b.shape[1:])

  def __len__(self) -> int:
    return len(self._a)

  def pair(self, index):
    return self._a[index], self._b[index]


class PairedFolderSource(_PairedSource):
  """A folder of side-by-side ``A|B`` images (the Pix2Pix dataset format).

  Every file (PNG/JPEG, width even) holds image A in its left half and the
  aligned image B in its right half. Files may differ in size: each file is
  split at half its own width and each half is resized directly to
  ``image_size`` x ``image_size`` (bilinear, antialiased when downscaling;
  no crop, so a non-square half is stretched, as in the Pix2Pix code).
  ``direction="AtoB"`` makes A the input and B the target, ``"BtoA"`` the
  reverse (facades: ``BtoA`` translates label maps to photos).

  Files are read as grayscale when all are grayscale, else RGB, then
  converted to ``channels`` (gray -> RGB repeats, RGB -> gray is luma).
  Every file is decoded once when the source is opened (a bad one is one
  `DataError` naming it, as is an odd width).
  """

  def __init__(
    self, root: str | os.PathLike, image_size: int = 256, channels: int | None = None, direction: str = "AtoB"
  ):
    if direction not in _DIRECTIONS:
      raise DataError(f"direction must be one of {', '.join(_DIRECTIONS)}, got {direction!r}")
    if not os.path.isdir(root):
      raise DataError(f"paired image folder {root} does not exist")
    if channels not in (None, 1, 3):
      raise DataError(f"{root}: only 1 or 3 channels are supported, requested {channels}")
    root = pathlib.Path(root)
    self._files, _, _ = sources.image_folder_files(root)
    sizes, gray = sources.decode_image_files(root, self._files, mixed_sizes_ok=True)
    for (h, w), path in sizes.items():
      if w % 2:
        raise DataError(f"{root}: {path.name} is {h}x{w}; side-by-side A|B images need an even width")
    self._mode = "L" if gray else "RGB"
    self._out_mode = {None: self._mode, 1: "L", 3: "RGB"}[channels]
    self._size, self._swap = int(image_size), direction == "BtoA"
    shape = (self._size, self._size, 1 if self._out_mode == "L" else 3)
    super().__init__(str(root), shape, shape)

  def __len__(self) -> int:
    return len(self._files)

  def _resize(self, half: Image.Image) -> np.ndarray:
    half = half.resize((self._size, self._size), Image.Resampling.BILINEAR)
    return np.asarray(half).reshape(self._size, self._size, -1)

  def pair(self, index):
    with Image.open(self._files[index]) as im:
      image = im.convert(self._mode).convert(self._out_mode)
    w, h = image.size
    a, b = self._resize(image.crop((0, 0, w // 2, h))), self._resize(image.crop((w // 2, 0, w, h)))
    return (b, a) if self._swap else (a, b)


def make_paired_source(
  name: str, split: str = "train", image_size: int | None = None, channels: int | None = None, direction: str = "AtoB"
) -> _PairedSource:
  """Opens a paired dataset.

  Args:
    name: ``"digits_edges"`` (offline; splits ``train``/``test``), a ``.npz``
      with arrays ``a`` and ``b`` (uint8, or float in [0, 1] or [-1, 1]:
      `jaxgan.data.sources.npz_images`), or a folder of ``A|B`` images (any
      sizes: `PairedFolderSource`). For a folder, ``split`` names a subfolder
      when one exists (``facades/train``, ``facades/val``), else it must be
      ``"train"``.
    image_size: output side (default 32 for digits, 256 for folders; ``.npz``
      arrays keep their size).
    channels: 1 or 3 for folders (default: native).
    direction: ``"AtoB"`` (A is the input) or ``"BtoA"``.
  """
  if direction not in _DIRECTIONS:
    raise DataError(f"direction must be one of {', '.join(_DIRECTIONS)}, got {direction!r}")
  if name == DIGIT_EDGES:
    if split not in ("train", "test"):
      raise DataError(f"{DIGIT_EDGES}: split must be 'train' or 'test', got {split!r}")
    a, b = digit_edge_pairs(split, image_size or 32)
    a, b = (b, a) if direction == "BtoA" else (a, b)
    return PairedArraySource(f"{DIGIT_EDGES}:{split}", a, b)
  if name.endswith(".npz"):
    if split != "train":
      raise DataError(f"{name}: an .npz file has a single split 'train', got {split!r}")
    arrays = sources.read_npz(name, ("a", "b"))
    a, b = (sources.npz_images(name, k, arrays[k]) for k in ("a", "b"))
    a, b = (b, a) if direction == "BtoA" else (a, b)
    return PairedArraySource(name, a, b)
  if os.path.isdir(name):
    root = os.path.join(name, split)
    if not os.path.isdir(root):
      if split != "train":
        raise DataError(f"paired folder {name} has no subfolder {split!r}")
      root = name
    return PairedFolderSource(root, image_size or 256, channels, direction)
  raise DataError(
    f"unknown paired dataset {name!r}: use {DIGIT_EDGES!r}, an .npz file with arrays "
    "'a' and 'b', or a folder of side-by-side A|B images"
  )


# --------------------------------------------------------------------------
# Unpaired sources.


def make_unpaired_sources(name: str, split: str = "train", data_dir: str | None = None, **options: Any) -> tuple:
  """Opens the two domains of an unpaired dataset; returns (source A, source B).

  Args:
    name: ``"digits_edges"`` (offline: A = upsampled digits, B = outlines;
      for ``train`` A uses the first 750 training digits and B the outlines
      of the other 750, so no image of A has its counterpart in B; ``test``
      gives the 297 test digits and their outlines); a folder with
      ``{split}A`` and ``{split}B`` subfolders (the CycleGAN download
      layout); or a TFDS ``cycle_gan/<name>`` dataset (splits
      ``{split}A`` / ``{split}B``, prepared in ``data_dir``).
    split: ``"train"`` or ``"test"``.
    **options: ``image_size``, the output side (default 32 for digits, else
      native for folders and 256 for TFDS), and ``channels``, 1 or 3
      (default: native; converted when different).
  """
  image_size, channels = options.pop("image_size", None), options.pop("channels", None)
  if options:
    raise TypeError(f"make_unpaired_sources() got unexpected options {sorted(options)}")
  if split not in ("train", "test"):
    raise DataError(f"unpaired split must be 'train' or 'test', got {split!r}")
  if name == DIGIT_EDGES:
    a, b = digit_edge_pairs(split, image_size or 32)
    if split == "train":
      half = len(a) // 2
      a, b = a[:half], b[half:]
    return (images_lib.ArraySource(f"{DIGIT_EDGES}:{split}A", a), images_lib.ArraySource(f"{DIGIT_EDGES}:{split}B", b))
  kwargs = dict(image_size=image_size, channels=channels, convert_channels=True)
  if os.path.isdir(name):
    paths = [os.path.join(name, f"{split}{d}") for d in "AB"]
    missing = [p for p in paths if not os.path.isdir(p)]
    if missing:
      raise DataError(f"unpaired folder {name} needs subfolders {split}A and {split}B (missing {', '.join(missing)})")
    return tuple(images_lib.make_source(p, **kwargs) for p in paths)
  if not name.startswith("cycle_gan/"):
    raise DataError(
      f"unknown unpaired dataset {name!r}: use {DIGIT_EDGES!r}, a folder with "
      f"{split}A/{split}B subfolders, or a TFDS cycle_gan/<name> dataset"
    )
  kwargs["image_size"] = image_size or 256
  return tuple(images_lib.make_source(name, split=f"{split}{d}", data_dir=data_dir, **kwargs) for d in "AB")


# --------------------------------------------------------------------------
# Iterators.


class PairedIterator:
  """Checkpointable iterator of ``{"a": (B, H, W, C_a), "b": (B, H, W, C_b)}`` float32 batches.

  One shuffled `BatchIterator` over the channel-stacked pairs, split back
  into inputs and targets; ``get_state`` / ``set_state`` are the inner
  iterator's.
  """

  def __init__(self, source: _PairedSource, batch_size: int, seed: int, **kwargs):
    self._inner = images_lib.make_iterator(source, batch_size, seed, **kwargs)
    self._split = source.shape_a[-1]

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    image = next(self._inner)["image"]
    return {"a": image[..., : self._split], "b": image[..., self._split :]}

  def get_state(self) -> dict[str, Any]:
    return self._inner.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._inner.set_state(state)

  def close(self) -> None:
    self._inner.close()


class UnpairedIterator:
  """Checkpointable iterator of unpaired ``{"a", "b"}`` batches from two sources.

  Each domain has its own shuffled stream (seeds ``seed`` and ``seed + 1``)
  and epoch length; labels are dropped.
  """

  def __init__(self, source_a, source_b, batch_size: int, seed: int, **kwargs):
    self._a = images_lib.make_iterator(source_a, batch_size, seed, **kwargs)
    self._b = images_lib.make_iterator(source_b, batch_size, seed + 1, **kwargs)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return {"a": next(self._a)["image"], "b": next(self._b)["image"]}

  def get_state(self) -> dict[str, Any]:
    return {"a": self._a.get_state(), "b": self._b.get_state()}

  def set_state(self, state: dict[str, Any]) -> None:
    self._a.set_state(state["a"])
    self._b.set_state(state["b"])

  def close(self) -> None:
    self._a.close()
    self._b.close()


# --------------------------------------------------------------------------
# Loose image files (the translate mode of the experiments).


def load_image_files(folder: str, image_size: int, channels: int, side: str = "full") -> tuple[list[str], np.ndarray]:
  """Every PNG/JPEG directly in ``folder`` as uint8 (N, S, S, channels), with the file names.

  ``side`` = ``"left"`` / ``"right"`` keeps that half of side-by-side A|B
  files first. Each image is center-cropped to a square, resized (bilinear)
  to ``image_size`` and converted to ``channels`` (1: luma, 3: RGB).
  """
  root = pathlib.Path(folder)
  if not root.is_dir():
    raise DataError(f"input folder {folder} does not exist")
  files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg"))
  if not files:
    raise DataError(f"input folder {folder} has no .png/.jpg/.jpeg images")
  if side not in ("full", "left", "right"):
    raise DataError(f"side must be full, left or right, got {side!r}")
  out = []
  for path in files:
    try:
      with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
    except OSError as e:
      raise DataError(f"cannot read image {path}: {e}") from None
    if side != "full":
      w, h = im.size
      im = im.crop((0, 0, w // 2, h) if side == "left" else (w // 2, 0, w - w % 2, h))
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
    out.append(np.asarray(im).reshape(image_size, image_size, channels))
  return [p.name for p in files], np.stack(out)
