"""Helpers shared by ``experiments/pix2pix.py`` and ``experiments/cyclegan.py``.

* `strip_image`: rows of (input | output | target ...) images as one PNG.
* `batched`: runs a jitted image function over an array in fixed-size chunks.
* `restore_for_inference`: the newest checkpoint of a workdir, for ``--mode=translate``.
* `check_outputs` / `write_translations`: writes translated images as PNGs, never overwriting files.
* `define_i2i_flags`: the flags both programs share.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from absl import flags
from PIL import Image

from jaxgan import checkpoint as checkpoint_lib
from jaxgan import image2image, viz
from jaxgan.errors import CheckpointError, ConfigError
from jaxgan.models.pix2pix import PATCH_SIZES


def define_i2i_flags(*, num_strip: int, flip_help: str, eval_what: str) -> None:
  """The flags pix2pix.py and cyclegan.py share: mode, PatchGAN, Adam and its decay, jitter, strips,
  evaluation and translation folders. ``eval_what`` names what the evaluation counts (e.g. "pairs")."""
  flags.DEFINE_enum("mode", "train", ["train", "translate"], "train, or translate --input_dir with the checkpoint.")
  flags.DEFINE_enum("patch_size", "70", [str(p) for p in sorted(PATCH_SIZES)], "PatchGAN receptive field N.")
  flags.DEFINE_integer("d_base_features", 64, "PatchGAN channels of the first block.", lower_bound=1)
  flags.DEFINE_float("lr", 2e-4, "Adam learning rate of all networks.", lower_bound=0.0)
  flags.DEFINE_float("b1", 0.5, "Adam beta1.")
  flags.DEFINE_float("b2", 0.999, "Adam beta2.")
  flags.DEFINE_integer(
    "decay_steps", 0, "Linear decay of the lr to 0 over the last this many steps (0: constant).", lower_bound=0
  )
  flags.DEFINE_bool("jitter", True, "Random jitter: resize to --jitter_size and crop back, in the jitted step.")
  flags.DEFINE_integer("jitter_size", 0, "Jitter resize side (0: 286/256 of --image_size).", lower_bound=0)
  flags.DEFINE_enum(
    "jitter_method",
    "bilinear",
    list(image2image.JITTER_METHODS),
    "Jitter resize interpolation (nearest keeps binary images crisp).",
  )
  flags.DEFINE_bool("flip", True, flip_help)
  flags.DEFINE_integer("num_strip", num_strip, f"Held-out {eval_what} in the sample strips.", lower_bound=1)
  flags.DEFINE_integer("strip_scale", 1, "Pixel repeat of the strips.", lower_bound=1)
  flags.DEFINE_integer("num_eval", 1000, f"Held-out {eval_what} in the final errors (at most).", lower_bound=1)
  flags.DEFINE_integer("eval_batch", 64, "Batch size of evaluation and translation.", lower_bound=1)
  flags.DEFINE_string("input_dir", None, "translate: folder of input images.")
  flags.DEFINE_string("output_dir", None, "translate: where outputs go (files are never overwritten).")


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return np.asarray(images, np.float32) / np.float32(127.5) - 1.0


def to_uint8(images: np.ndarray) -> np.ndarray:
  """float [-1, 1] -> uint8 [0, 255]."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _rgb(x: np.ndarray, channels: int) -> np.ndarray:
  return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 and channels == 3 else x


def strip_image(path: str, columns: Sequence[np.ndarray], scale: int = 1) -> str:
  """Saves a grid whose row i is (columns[0][i] | columns[1][i] | ...), images in [-1, 1]."""
  channels = max(c.shape[-1] for c in columns)
  cols = [_rgb(np.asarray(c, np.float32), channels) for c in columns]
  tiles = np.stack(cols, axis=1).reshape((-1,) + cols[0].shape[1:])
  return viz.save_image_grid(path, tiles, rows=len(cols[0]), scale=scale)


def batched(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch_size: int) -> np.ndarray:
  """``fn`` over ``images`` in chunks of ``batch_size`` (the last one padded by repetition,
  so one compiled shape serves every chunk); outputs are concatenated."""
  out = []
  for start in range(0, len(images), batch_size):
    chunk = images[start : start + batch_size]
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
    out.append(np.asarray(fn(chunk))[:n])
  return np.concatenate(out)


def require_checkpoint(workdir: str) -> str:
  """``workdir/checkpoints`` if it holds a finished checkpoint step, else one clear error."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  steps = [d for d in os.listdir(directory) if d.isdigit()] if os.path.isdir(directory) else []
  if not steps:
    raise CheckpointError(f"no checkpoint in {directory}: train first (--mode=train) with the same flags")
  return directory


def restore_for_inference(workdir: str, name: str, state):
  """The newest checkpoint in ``workdir/checkpoints`` restored into ``state``'s structure."""
  directory = require_checkpoint(workdir)
  checkpointer = checkpoint_lib.Checkpointer(directory)
  try:
    restored = checkpointer.restore_latest(state, checkpoint_lib.model_signature(name, state))
  finally:
    checkpointer.close()
  if restored is None:
    raise CheckpointError(f"no checkpoint in {directory}: train first (--mode=train) with the same flags")
  return restored[0]


def check_outputs(output_dir: str, names: Sequence[str]) -> list[str]:
  """The output paths ``output_dir/<stem>.png`` for ``names``; an error if any exists or collides."""
  if not output_dir:
    raise ConfigError("--output_dir is required with --mode=translate")
  paths = [os.path.join(output_dir, os.path.splitext(n)[0] + ".png") for n in names]
  if len(set(paths)) != len(paths):
    raise ConfigError("input files share a name stem (e.g. a.png and a.jpg): outputs would collide")
  existing = [p for p in paths if os.path.exists(p)]
  if existing:
    raise ConfigError(
      f"{existing[0]} already exists ({len(existing)} outputs would be overwritten): choose an empty --output_dir"
    )
  return paths


def write_translations(output_dir: str, names: Sequence[str], images: np.ndarray) -> list[str]:
  """Writes ``images`` ([-1, 1]) as ``output_dir/<stem>.png``; refuses to overwrite."""
  paths = check_outputs(output_dir, names)
  os.makedirs(output_dir, exist_ok=True)
  for path, image in zip(paths, to_uint8(images)):
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
  return paths
