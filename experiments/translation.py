"""What ``experiments/pix2pix.py`` and ``experiments/cyclegan.py`` share: the translate mode.

(Their shared flags are `flag_groups.translation`.)

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
from PIL import Image

from jaxgan import checkpoint, recipes, runs, trainer, viz
from jaxgan.errors import CheckpointError, ConfigError


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
