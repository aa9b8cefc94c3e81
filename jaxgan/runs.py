"""A finished (or running) run of any experiment, rebuilt from its workdir.

Every experiment saves its resolved flags in ``<workdir>/flags.json`` (with
``experiment``, the name its checkpoints are signed with). From them the
model, the optimisers and the step settings are rebuilt exactly as training
built them, and a checkpoint is restored into that structure:

* ``image``: experiments/gan.py and dcgan.py (`jaxgan.experiment_utils`);
* ``conditional``: experiments/cgan.py (`conditional_state` and friends,
  which cgan.py itself trains with);
* ``toy``: experiments/wgan.py on the 2-D mixtures (`toy_state_kwargs`,
  which wgan.py itself trains with), one seed or a stacked ``--num_seeds`` run.

`load_run` restores the ``latest`` checkpoint (what a resumed run would
continue from), the ``best`` one (``checkpoints_best/``, kept by
`jaxgan.trainer.fit` with ``best_metric``) or a numbered step.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import optax

from jaxgan import checkpoint as checkpoint_lib
from jaxgan import conditional, experiment_utils, multiseed, regularizers, steps, trainer
from jaxgan.data import images as images_lib
from jaxgan.data import toy
from jaxgan.errors import CheckpointError, ConfigError
from jaxgan.models.mlp import ToyCritic, ToyGenerator
from jaxgan.state import GANState, create_gan_state

__all__ = [
  "IMAGE",
  "CONDITIONAL",
  "TOY",
  "Run",
  "read_flags",
  "run_kind",
  "load_run",
  "schedule_optimizer",
  "toy_state_kwargs",
  "toy_step_config",
  "toy_seeds",
  "conditional_models",
  "conditional_optimizers",
  "conditional_step_config",
  "conditional_state",
  "parse_step",
  "CGAN_NAME",
  "TOY_NAME",
]

IMAGE, CONDITIONAL, TOY = "image", "conditional", "toy"
CGAN_NAME = "cgan"  # the names experiments/cgan.py and wgan.py sign their checkpoints with
TOY_NAME = "wgan_toy"
_RUN_SCRIPTS = "experiments/gan.py, dcgan.py, cgan.py or wgan.py"


@dataclasses.dataclass
class Run:
  """A restored run.

  Attributes:
    workdir: the run's directory (absolute).
    cfg: its flags.json (with ``experiment``).
    kind: `IMAGE`, `CONDITIONAL` or `TOY`.
    state: the restored `GANState` (stacked over seeds for a toy
      ``--num_seeds`` run; see `single_states`).
    config: the run's `jaxgan.steps.StepConfig`.
    step: the restored iteration.
    checkpoint: what was asked for: ``"latest"``, ``"best"`` or a step.
    image_shape: (H, W, C) of image runs, None for toy runs.
  """

  workdir: str
  cfg: dict
  kind: str
  state: GANState
  config: steps.StepConfig
  step: int
  checkpoint: str
  image_shape: tuple[int, int, int] | None

  @property
  def experiment(self) -> str:
    return self.cfg["experiment"]

  def single_states(self) -> list[tuple[int, GANState]]:
    """(seed, one run's state) for every seed (one pair unless a toy ``--num_seeds`` run)."""
    if self.kind == TOY and int(self.cfg.get("num_seeds", 1)) > 1:
      return [(s, multiseed.unstack_state(self.state, k)) for k, s in enumerate(toy_seeds(self.cfg))]
    return [(int(self.cfg["seed"]), self.state)]


def read_flags(workdir: str) -> dict:
  """The run's flags.json, with ``experiment`` filled in for runs written before it was saved there."""
  workdir = os.path.abspath(workdir)
  if not os.path.isdir(workdir):
    raise CheckpointError(f"{workdir} does not exist: pass the --workdir of an {_RUN_SCRIPTS} run")
  path = os.path.join(workdir, "flags.json")
  if not os.path.exists(path):
    raise CheckpointError(f"{workdir} holds no run (no flags.json): pass the --workdir of an {_RUN_SCRIPTS} run")
  try:
    with open(path) as f:
      cfg = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"cannot read {path} ({e})") from None
  if not isinstance(cfg, dict):
    raise CheckpointError(f"{path} is not a flags file of an {_RUN_SCRIPTS} run")
  kind = run_kind(cfg, path)
  cfg.setdefault("experiment", {CONDITIONAL: CGAN_NAME, TOY: TOY_NAME}.get(kind))
  return cfg


def run_kind(cfg: Mapping[str, Any], path: str = "flags.json") -> str:
  """`IMAGE`, `CONDITIONAL` or `TOY` from a run's flags (`CheckpointError` for other runs)."""
  experiment = cfg.get("experiment")
  if experiment == CGAN_NAME or (experiment is None and "eval_per_class" in cfg):
    return CONDITIONAL
  if experiment == TOY_NAME or (experiment is None and "clip_value" in cfg and "pack" in cfg):
    return TOY
  if experiment is not None and "generator" in cfg and "g_widths" in cfg:
    return IMAGE
  raise CheckpointError(f"{path} is not from {_RUN_SCRIPTS} (experiment {experiment!r})")


# ---------------------------------------------------------------------------- optimisers


def schedule_optimizer(cfg: Mapping[str, Any], lr: float, num_updates: int) -> optax.GradientTransformation:
  """Adam(lr, b1, b2) or RMSProp(lr) (``cfg["optimizer"]``), constant or with a linear decay to 0.

  ``linear_decay`` keeps ``lr`` for the first ``decay_start`` fraction of the
  ``num_updates`` updates, then decays it linearly to 0 (wgan.py and cgan.py).
  """
  if cfg.get("lr_schedule", "constant") == "linear_decay":
    start = int(cfg["decay_start"] * num_updates)
    lr = optax.linear_schedule(lr, 0.0, max(num_updates - start, 1), transition_begin=start)
  if cfg.get("optimizer", "adam") == "rmsprop":
    return optax.rmsprop(lr)
  return optax.adam(lr, b1=cfg["b1"], b2=cfg["b2"])


# ---------------------------------------------------------------------------- toy (wgan.py)


def toy_seeds(cfg: Mapping[str, Any]) -> list[int]:
  """The seeds of a toy run: --seed .. --seed + num_seeds - 1."""
  return [int(cfg["seed"]) + k for k in range(int(cfg.get("num_seeds", 1)))]


def toy_step_config(cfg: Mapping[str, Any]) -> steps.StepConfig:
  return steps.StepConfig(
    loss=cfg["loss"],
    n_critic=cfg["n_critic"],
    latent_dim=cfg["latent_dim"],
    latent_dist=cfg["latent_dist"],
    gp_weight=cfg["gp_weight"],
    ema_decay=cfg["ema_decay"],
    skip_nonfinite=bool(cfg.get("skip_nonfinite", False)),
    pack=cfg.get("pack", 1),
  )


def toy_state_kwargs(cfg: Mapping[str, Any]) -> dict:
  """`create_gan_state` arguments but the seed: MLP generator and critic, optimisers (critic clipped)."""
  g_tx = schedule_optimizer(cfg, cfg["lr"], cfg["num_steps"])
  d_tx = schedule_optimizer(cfg, cfg["lr"], cfg["num_steps"] * cfg["n_critic"])
  if cfg.get("clip_value"):
    d_tx = optax.chain(d_tx, regularizers.clip_weights(cfg["clip_value"]))
  generator = ToyGenerator(hidden=cfg.get("g_width") or cfg["width"], depth=cfg.get("g_depth") or cfg["depth"])
  return dict(
    generator=generator,
    discriminator=ToyCritic(hidden=cfg["width"], depth=cfg["depth"]),
    g_tx=g_tx,
    d_tx=d_tx,
    latent_dim=cfg["latent_dim"],
    data_shape=(2,),
    use_ema=cfg["ema_decay"] > 0,
    pack=cfg.get("pack", 1),
  )


def _abstract_toy_state(cfg: Mapping[str, Any]) -> GANState:
  kwargs = toy_state_kwargs(cfg)
  single = jax.eval_shape(lambda: create_gan_state(seed=int(cfg["seed"]), **kwargs))
  k = len(toy_seeds(cfg))
  if k == 1:
    return single
  # The structure of multiseed.stack_states: a leading seed axis on every leaf but the shared step.
  stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((k, *x.shape), x.dtype), single.replace(step=None))
  return stacked.replace(step=single.step)


# ---------------------------------------------------------------------------- conditional (cgan.py)


def _ints(values, flag: str):
  if values is None:
    return None
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise ConfigError(f"--{flag}: hidden widths must be integers, got {','.join(values)}") from None


def conditional_models(cfg: Mapping[str, Any], image_shape: tuple[int, int, int], num_classes: int):
  """(G, D) of a cgan.py run from the registries of `jaxgan.models.cgan`, with its width overrides."""
  return conditional.build_conditional_pair(
    cfg["generator"],
    cfg["discriminator"],
    tuple(image_shape),
    num_classes,
    g_overrides={
      "hidden": _ints(cfg.get("g_hidden"), "g_hidden"),
      "width": cfg.get("g_width"),
      "dropout": cfg.get("g_dropout"),
    },
    d_overrides={
      "hidden": _ints(cfg.get("d_hidden"), "d_hidden"),
      "width": cfg.get("d_width"),
      "dropout": cfg.get("d_dropout"),
    },
  )


def conditional_optimizers(cfg: Mapping[str, Any]) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """(g_tx, d_tx) of a cgan.py run: D at --d_lr (default --lr), n_critic updates per iteration."""
  d_lr = cfg["lr"] if cfg.get("d_lr") is None else cfg["d_lr"]
  return (
    schedule_optimizer(cfg, cfg["lr"], cfg["num_steps"]),
    schedule_optimizer(cfg, d_lr, cfg["num_steps"] * cfg["n_critic"]),
  )


def conditional_step_config(cfg: Mapping[str, Any], num_classes: int) -> steps.StepConfig:
  return steps.StepConfig(
    loss=cfg["loss"],
    n_critic=cfg["n_critic"],
    latent_dim=cfg["latent_dim"],
    latent_dist=cfg["latent_dist"],
    real_label=cfg["real_label"],
    gp_weight=cfg["gp_weight"],
    r1_weight=cfg["r1_weight"],
    ema_decay=cfg["ema_decay"],
    num_classes=num_classes,
    skip_nonfinite=bool(cfg.get("skip_nonfinite", False)),
  )


def conditional_state(
  cfg: Mapping[str, Any], image_shape: tuple[int, int, int], num_classes: int, abstract: bool = False
) -> GANState:
  """The initial `GANState` of a cgan.py run (``abstract``: shapes only, a restore target)."""
  gen, disc = conditional_models(cfg, image_shape, num_classes)
  g_tx, d_tx = conditional_optimizers(cfg)

  def init():
    return create_gan_state(
      seed=cfg["seed"],
      generator=gen,
      discriminator=disc,
      g_tx=g_tx,
      d_tx=d_tx,
      latent_dim=cfg["latent_dim"],
      data_shape=tuple(image_shape),
      num_classes=num_classes,
      use_ema=cfg["ema_decay"] > 0,
    )

  return jax.eval_shape(init) if abstract else init()


# ---------------------------------------------------------------------------- restoring


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


def load_run(workdir: str, step: str | int = "latest") -> Run:
  """Rebuilds the run in ``workdir`` from its flags.json and restores checkpoint ``step``.

  ``step``: ``"latest"``, ``"best"`` or a step number (see
  `jaxgan.trainer.restore_checkpoint`). Raises `CheckpointError` for a
  directory without a run or without that checkpoint.
  """
  workdir = os.path.abspath(workdir)
  step = parse_step(step)
  cfg = read_flags(workdir)
  kind = run_kind(cfg)
  if kind == IMAGE:
    state, cfg, config, image_shape = experiment_utils.load_run(workdir, step)
  elif kind == CONDITIONAL:
    source = images_lib.make_source(cfg["dataset"], "train", cfg.get("data_dir"))
    if source.num_classes is None:
      raise ConfigError(f"dataset {cfg['dataset']!r} of this cgan.py run has no labels")
    image_shape = tuple(source.images_shape)
    target = conditional_state(cfg, image_shape, source.num_classes, abstract=True)
    state, _ = trainer.restore_checkpoint(workdir, target, checkpoint_lib.model_signature(CGAN_NAME, target), step)
    config = conditional_step_config(cfg, source.num_classes)
  else:
    toy.get_mixture(cfg["dataset"])  # an unknown mixture is one ConfigError
    image_shape = None
    target = _abstract_toy_state(cfg)
    state, _ = trainer.restore_checkpoint(workdir, target, checkpoint_lib.model_signature(TOY_NAME, target), step)
    config = toy_step_config(cfg)
  return Run(
    workdir=workdir,
    cfg=cfg,
    kind=kind,
    state=state,
    config=config,
    step=int(checkpoint_lib.host_value(state.step)),
    checkpoint=str(step),
    image_shape=tuple(image_shape) if image_shape is not None else None,
  )
