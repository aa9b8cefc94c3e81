"""A run: the objects built from its flags (`Setup`), and a checkpoint of it restored (`Run`).

Every experiment saves its resolved flags in ``<workdir>/flags.json``, with
``experiment``, the registry name of its recipe (`jaxgan.recipes.EXPERIMENTS`)
and the name its checkpoints are signed with. A recipe turns those flags
into a `Setup`: the family and its config, how to build the initial state
(one seed, or K seeds stacked), the training data stream and what else the
experiment's figures and evaluation need. The training scripts, the
evaluation (`experiments/evaluate.py`) and `experiments/explore.py` all build
their objects this way, so a saved run is rebuilt exactly as it was trained.

`restore` loads a checkpoint of a setup's run: ``"latest"`` (what a resumed
run would continue from), ``"best"`` (``checkpoints_best/``, kept by
`jaxgan.trainer.fit` with ``best_metric``) or a numbered step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax

from jaxgan import checkpoint as checkpoint_lib
from jaxgan import multiseed, parallel, trainer
from jaxgan.errors import CheckpointError, ConfigError

__all__ = ["KINDS", "Run", "Setup", "parse_step", "read_flags", "require", "restore", "widths"]

# What a run's samples are, for figures and evaluation.
KINDS = ("image", "conditional", "toy", "paired", "unpaired")


@dataclasses.dataclass
class Setup:
  """Everything one run is made of, built from its flags by a recipe (`jaxgan.recipes`).

  Attributes:
    experiment: the recipe's registry name (saved as ``experiment`` in
      flags.json; the checkpoints' signature name).
    kind: one of `KINDS`: what the samples are (images, class-conditional
      images, 2-D points, paired or unpaired translations).
    family: the training family module (`jaxgan.families.gan`, ``pix2pix``,
      ``cyclegan``).
    cfg: the run's flags, with ``experiment``.
    config: the family's ``Config``.
    seeds: the training seeds; more than one: the state is K runs stacked
      (`jaxgan.multiseed`) and trained by one vmapped step.
    init_one: ``seed -> `` the initial state of one run.
    make_data: ``() ->`` the training stream for this process (an iterator
      with ``get_state`` / ``set_state``), stacked over seeds when there are
      several.
    batch_axis: the batch axis of one seed's batches (1 with a leading
      n_critic axis).
    info: what the recipe knows besides (image shape, classes, data sources).
  """

  experiment: str
  kind: str
  family: Any
  cfg: dict
  config: Any
  seeds: tuple[int, ...]
  init_one: Callable[[int], Any]
  make_data: Callable[[], Iterator]
  batch_axis: int
  info: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"unknown run kind {self.kind!r}")
    self.cfg = {**self.cfg, "experiment": self.experiment}

  @property
  def stacked(self) -> bool:
    return len(self.seeds) > 1

  def init_state(self) -> Any:
    """The initial state: one run's, or the K runs' stacked (run k bit-identical to a single run of seed k)."""
    if not self.stacked:
      return self.init_one(self.seeds[0])
    return multiseed.stack_states([self.init_one(s) for s in self.seeds])

  def abstract_state(self) -> Any:
    """The initial state's shapes and dtypes only (a restore target; nothing is computed)."""
    single = jax.eval_shape(lambda: self.init_one(self.seeds[0]))
    if not self.stacked:
      return single
    k = len(self.seeds)
    stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((k, *x.shape), x.dtype), single.replace(step=None))
    return stacked.replace(step=single.step)

  def train_step(self) -> Callable:
    """The family's pure ``train_step`` with this run's config bound: ``(state, batch) -> (state, metrics)``."""
    return functools.partial(self.family.train_step, config=self.config)

  def compile(self, mesh=None) -> parallel.CompiledStep:
    """The compiled step over ``mesh`` (`jaxgan.parallel.compile_step`; vmapped over the seeds when stacked)."""
    return parallel.compile_step(self.train_step(), mesh=mesh, batch_axis=self.batch_axis, seeds=self.stacked)

  def signature(self, state: Any) -> str:
    """The model signature its checkpoints carry (`jaxgan.checkpoint.model_signature`)."""
    return checkpoint_lib.model_signature(self.experiment, state)

  def single_states(self, state: Any) -> list[tuple[int, Any]]:
    """(seed, that run's state) for every seed of ``state``."""
    if not self.stacked:
      return [(self.seeds[0], state)]
    return [(s, multiseed.unstack_state(state, k)) for k, s in enumerate(self.seeds)]


@dataclasses.dataclass
class Run:
  """A checkpoint of a run, restored.

  Attributes:
    setup: the run's `Setup`.
    workdir: its directory (absolute).
    state: the restored state (stacked over seeds for a multi-seed run; see
      `Setup.single_states`).
    step: the restored iteration.
    checkpoint: what was asked for: ``"latest"``, ``"best"`` or a step.
  """

  setup: Setup
  workdir: str
  state: Any
  step: int
  checkpoint: str

  @property
  def cfg(self) -> dict:
    return self.setup.cfg

  @property
  def experiment(self) -> str:
    return self.setup.experiment

  @property
  def kind(self) -> str:
    return self.setup.kind

  def single_states(self) -> list[tuple[int, Any]]:
    return self.setup.single_states(self.state)


def read_flags(workdir: str, scripts: str = "an experiments/*.py") -> dict:
  """The run's flags.json; a `CheckpointError` names what is wrong (no run, unreadable, no ``experiment``)."""
  workdir = os.path.abspath(workdir)
  if not os.path.isdir(workdir):
    raise CheckpointError(f"{workdir} does not exist: pass the --workdir of {scripts} run")
  path = os.path.join(workdir, "flags.json")
  if not os.path.exists(path):
    raise CheckpointError(f"{workdir} holds no run (no flags.json): pass the --workdir of {scripts} run")
  try:
    with open(path) as f:
      cfg = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"cannot read {path} ({e})") from None
  if not isinstance(cfg, dict) or not isinstance(cfg.get("experiment"), str):
    raise CheckpointError(
      f"{path} names no experiment (no 'experiment' entry): it was not written by {scripts} script of this "
      "version; rerun the training command to rewrite it"
    )
  return cfg


def parse_step(step: str | int) -> str | int:
  """``"latest"``, ``"best"`` or a non-negative int (`ConfigError` otherwise)."""
  if isinstance(step, int) or step in ("latest", "best"):
    return step
  try:
    value = int(step)
  except (TypeError, ValueError):
    raise ConfigError(f"--step={step}: use latest, best or a checkpoint step number") from None
  if value < 0:
    raise ConfigError(f"--step={step}: a step number is >= 0")
  return value


def restore(setup: Setup, workdir: str, step: str | int = "latest") -> Run:
  """Restores checkpoint ``step`` of ``setup``'s run in ``workdir`` (`jaxgan.trainer.restore_checkpoint`)."""
  workdir = os.path.abspath(workdir)
  step = parse_step(step)
  target = setup.abstract_state()
  state, _ = trainer.restore_checkpoint(workdir, target, setup.signature(target), step)
  return Run(
    setup=setup, workdir=workdir, state=state, step=int(checkpoint_lib.host_value(state.step)), checkpoint=str(step)
  )


def require(cfg: Mapping[str, Any], *names: str) -> None:
  """A `CheckpointError` naming the first of ``names`` missing from a run's flags (a flags.json of another version)."""
  missing = [n for n in names if n not in cfg]
  if missing:
    raise CheckpointError(
      f"the run's flags have no {missing[0]!r} (experiment {cfg.get('experiment')!r}): it was written by another "
      "version of jaxgan; rerun the training command to rewrite flags.json"
    )


def widths(cfg: Mapping[str, Any], flag: str, count: int | None = None, meaning: str = "") -> tuple[int, ...]:
  """The integers of the list flag ``flag`` (--g_widths / --d_widths), () when it is unset or empty.

  ``count``: how many numbers the model takes (None: any number); a wrong
  count, a non-integer or a width < 1 is one `ConfigError` naming the flag
  (and ``meaning``, what the numbers are).
  """
  values = cfg.get(flag)
  if values in (None, "", [], ()):
    return ()
  if isinstance(values, (int, str)):
    values = str(values).split(",")
  try:
    out = tuple(int(str(v).strip()) for v in values)
  except ValueError:
    raise ConfigError(f"--{flag}={','.join(map(str, values))}: widths must be integers") from None
  if any(w < 1 for w in out):
    raise ConfigError(f"--{flag}={','.join(map(str, out))}: widths must be >= 1")
  if count is not None and len(out) != count:
    what = f" ({meaning})" if meaning else ""
    raise ConfigError(f"--{flag} takes {count} number{'s' if count > 1 else ''}{what}, got {len(out)}")
  return out
