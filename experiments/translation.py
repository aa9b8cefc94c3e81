"""What ``experiments/pix2pix.py`` and ``experiments/cyclegan.py`` share: their flags and the translate mode.

* `define_flags`: the flags both programs share (mode, PatchGAN, Adam and its
  decay, jitter, strips, evaluation and translation folders).
* `require_checkpoint` / `load_for_translation`: the trained run of a
  workdir, rebuilt from its flags.json (`jaxgan.recipes.load_run`), for
  ``--mode=translate``.
* `check_outputs` / `write_translations`: translated images as PNGs, never
  overwriting files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from absl import flags
from PIL import Image

from jaxgan import augment, checkpoint, recipes, runs, trainer, viz
from jaxgan.errors import CheckpointError, ConfigError
from jaxgan.models.pix2pix import PATCH_SIZES


def define_flags(*, num_strip: int, flip_help: str, eval_what: str) -> None:
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
    list(augment.JITTER_METHODS),
    "Jitter resize interpolation (nearest keeps binary images crisp).",
  )
  flags.DEFINE_bool("flip", True, flip_help)
  flags.DEFINE_integer("num_strip", num_strip, f"Held-out {eval_what} in the sample strips.", lower_bound=1)
  flags.DEFINE_integer("strip_scale", 1, "Pixel repeat of the strips.", lower_bound=1)
  flags.DEFINE_integer("num_eval", 1000, f"Held-out {eval_what} in the final errors (at most).", lower_bound=1)
  flags.DEFINE_integer("eval_batch", 64, "Batch size of evaluation and translation.", lower_bound=1)
  flags.DEFINE_string("input_dir", None, "translate: folder of input images.")
  flags.DEFINE_string("output_dir", None, "translate: where outputs go (files are never overwritten).")


def require_checkpoint(workdir: str) -> str:
  """``workdir/checkpoints`` if it holds a finished checkpoint step, else one clear error."""
  directory = os.path.join(os.path.abspath(workdir), trainer.CHECKPOINT_DIR)
  if not checkpoint.finished_steps(directory):
    raise CheckpointError(f"no checkpoint in {directory}: train first (--mode=train) with the same flags")
  return directory


def load_for_translation(workdir: str, experiment: str) -> runs.Run:
  """The newest checkpoint of the ``experiment`` run in ``workdir``, rebuilt from the run's own flags.json."""
  require_checkpoint(workdir)
  run = recipes.load_run(workdir)
  if run.experiment != experiment:
    raise ConfigError(f"{workdir} holds a {run.experiment} run, not a {experiment} one: pass a {experiment} --workdir")
  return run


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
  for path, image in zip(paths, viz.to_uint8(images)):
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
  return paths
