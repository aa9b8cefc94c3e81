"""Recipes: each experiment's objects built from its flags, and the registry that finds them by name.

`EXPERIMENTS` maps the name an experiment saves in flags.json (``experiment``)
to its recipe's ``build(cfg) -> jaxgan.runs.Setup``:

| name | script | recipe |
|---|---|---|
| ``gan``, ``dcgan`` | experiments/gan.py, dcgan.py | `jaxgan.recipes.images` |
| ``cgan`` | experiments/cgan.py | `jaxgan.recipes.conditional` |
| ``wgan_toy`` | experiments/wgan.py | `jaxgan.recipes.toy` |
| ``pix2pix`` | experiments/pix2pix.py | `jaxgan.recipes.pix2pix` |
| ``cyclegan`` | experiments/cyclegan.py | `jaxgan.recipes.cyclegan` |

`setup(cfg)` builds a run from flags (the training scripts), `load_run`
rebuilds a saved run from its workdir and restores a checkpoint
(experiments/evaluate.py, explore.py, the translate modes). No family is
guessed from flag names: a flags.json without a registered ``experiment``
is one error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from jaxgan import runs
from jaxgan.errors import CheckpointError, ConfigError
from jaxgan.recipes import conditional, cyclegan, images, pix2pix, toy

EXPERIMENTS: dict[str, Callable[[Mapping[str, Any]], runs.Setup]] = {
  "gan": functools.partial(images.build, experiment="gan"),
  "dcgan": functools.partial(images.build, experiment="dcgan"),
  conditional.EXPERIMENT: conditional.build,
  toy.EXPERIMENT: toy.build,
  pix2pix.EXPERIMENT: pix2pix.build,
  cyclegan.EXPERIMENT: cyclegan.build,
}
SCRIPTS = "experiments/gan.py, dcgan.py, cgan.py, wgan.py, pix2pix.py or cyclegan.py"


def setup(cfg: Mapping[str, Any], experiment: str | None = None) -> runs.Setup:
  """The `jaxgan.runs.Setup` of the run ``cfg`` describes (``experiment`` defaults to ``cfg["experiment"]``)."""
  name = experiment or cfg.get("experiment")
  if name not in EXPERIMENTS:
    raise ConfigError(f"unknown experiment {name!r}: the registered ones are {', '.join(sorted(EXPERIMENTS))}")
  return EXPERIMENTS[name]({**cfg, "experiment": name})


def load_run(workdir: str, step: str | int = "latest") -> runs.Run:
  """The run in ``workdir`` rebuilt from its flags.json, with checkpoint ``step`` restored.

  ``step``: ``"latest"``, ``"best"`` or a step number. Raises
  `CheckpointError` for a directory without a run, a run of an unknown
  experiment, or a missing checkpoint.
  """
  step = runs.parse_step(step)
  cfg = runs.read_flags(workdir, scripts="an " + SCRIPTS)
  if cfg["experiment"] not in EXPERIMENTS:
    raise CheckpointError(
      f"{workdir} holds a run of experiment {cfg['experiment']!r}, which no recipe builds (registered: "
      f"{', '.join(sorted(EXPERIMENTS))})"
    )
  return runs.restore(setup(cfg), workdir, step)
