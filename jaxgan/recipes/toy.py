"""The 2-D mixture recipe ``wgan_toy`` (experiments/wgan.py): WGAN, WGAN-GP and friends on ring8 / grid25.

`build(cfg)` gives the run's `jaxgan.runs.Setup`: an MLP generator and critic
(`jaxgan.models.mlp.ToyGenerator` / ``ToyCritic``), Adam or RMSProp with the
critic's weight clipping chained after it (--clip_value), the
`jaxgan.families.gan.Config` (the WGAN-GP penalty from --gp_weight, PacGAN
packing), and one data stream per seed: a ``--num_seeds=K`` run trains the
seeds --seed .. --seed+K-1 stacked in one vmapped step, run k equal to a
single run with seed --seed+k.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxgan import multiseed, optimizers, regularizers, runs
from jaxgan.data import toy
from jaxgan.families import gan
from jaxgan.models.mlp import ToyCritic, ToyGenerator

EXPERIMENT = "wgan_toy"


def seeds(cfg: Mapping[str, Any]) -> tuple[int, ...]:
  """The seeds of a toy run: --seed .. --seed + num_seeds - 1."""
  return tuple(int(cfg["seed"]) + k for k in range(int(cfg.get("num_seeds", 1))))


def step_config(cfg: Mapping[str, Any]) -> gan.Config:
  return gan.Config(
    loss=cfg["loss"],
    n_critic=cfg["n_critic"],
    latent_dim=cfg["latent_dim"],
    latent_dist=cfg["latent_dist"],
    penalties=(regularizers.wgan_gp(cfg["gp_weight"]),) if cfg.get("gp_weight") else (),
    ema_decay=cfg["ema_decay"],
    skip_nonfinite=bool(cfg.get("skip_nonfinite", False)),
    pack=cfg.get("pack", 1),
  )


def make_optimizers(cfg: Mapping[str, Any]):
  """(g_tx, d_tx): --optimizer with --lr_schedule over each network's updates; the critic clipped at --clip_value."""

  def tx(num_updates, clip_value=0.0):
    rate = optimizers.learning_rate(
      cfg["lr"], cfg.get("lr_schedule", "constant"), num_updates=num_updates, decay_start=cfg.get("decay_start", 0.0)
    )
    return optimizers.make_optimizer(
      cfg.get("optimizer", "adam"), rate, b1=cfg["b1"], b2=cfg["b2"], clip_value=clip_value
    )

  return tx(cfg["num_steps"]), tx(cfg["num_steps"] * cfg["n_critic"], cfg.get("clip_value") or 0.0)


def build(cfg: Mapping[str, Any], experiment: str = EXPERIMENT) -> runs.Setup:
  """The `jaxgan.runs.Setup` of a wgan.py run (one seed, or --num_seeds stacked)."""
  runs.require(cfg, "dataset", "width", "depth", "latent_dim", "seed", "n_critic", "batch_size")
  mixture = toy.get_mixture(cfg["dataset"])
  config = step_config(cfg)
  g_tx, d_tx = make_optimizers(cfg)
  generator = ToyGenerator(hidden=cfg.get("g_width") or cfg["width"], depth=cfg.get("g_depth") or cfg["depth"])
  critic = ToyCritic(hidden=cfg["width"], depth=cfg["depth"])
  run_seeds = seeds(cfg)

  def init_one(seed):
    return gan.init_state(
      config, seed=seed, generator=generator, discriminator=critic, g_tx=g_tx, d_tx=d_tx, data_shape=(2,)
    )

  def make_data():
    iterators = [toy.MixtureIterator(mixture, cfg["batch_size"], s, n_critic=cfg["n_critic"]) for s in run_seeds]
    return iterators[0] if len(iterators) == 1 else multiseed.StackedIterator(iterators)

  return runs.Setup(
    experiment=experiment,
    kind="toy",
    family=gan,
    cfg=dict(cfg),
    config=config,
    seeds=run_seeds,
    init_one=init_one,
    make_data=make_data,
    batch_axis=1,
    info={"mixture": mixture},
  )
