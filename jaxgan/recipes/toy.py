"""The 2-D mixture recipe ``wgan_toy`` (experiments/wgan.py): WGAN, WGAN-GP and friends on ring8 / grid25.

`build(cfg)` gives the run's `jaxgan.runs.Setup`: an MLP generator and critic
(`jaxgan.models.mlp.ToyGenerator` / ``ToyCritic``, hidden widths --g_widths / --d_widths), Adam or RMSProp with the
critic's weight clipping chained after it (--clip_value), the
`jaxgan.families.gan.Config` (the WGAN-GP penalty from --gp_weight, PacGAN
packing), and one data stream per seed: a ``--num_seeds=K`` run trains the
seeds --seed .. --seed+K-1 stacked in one vmapped step, run k equal to a
single run with seed --seed+k.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxgan import multiseed, runs
from jaxgan.data import toy
from jaxgan.families import gan
from jaxgan.models.mlp import ToyCritic, ToyGenerator
from jaxgan.recipes import gan_settings

EXPERIMENT = "wgan_toy"
DEFAULT_WIDTHS = (512, 512, 512)  # Gulrajani et al.'s toy networks: 3 ReLU layers of 512 units


def seeds(cfg: Mapping[str, Any]) -> tuple[int, ...]:
  """The seeds of a toy run: --seed .. --seed + num_seeds - 1."""
  return tuple(int(cfg["seed"]) + k for k in range(int(cfg.get("num_seeds", 1))))


def build(cfg: Mapping[str, Any], experiment: str = EXPERIMENT) -> runs.Setup:
  """The `jaxgan.runs.Setup` of a wgan.py run (one seed, or --num_seeds stacked)."""
  runs.require(cfg, "dataset", "g_widths", "d_widths", "latent_dim", "seed", "n_critic", "batch_size")
  mixture = toy.get_mixture(cfg["dataset"])
  # The MLPs of the 2-D runs are as fast scanned as inlined (benchmarks/toy_loop.py: 10.2 ms per iteration
  # either way); scanned keeps the program the published 2-D results were trained with, bit for bit.
  config = gan_settings.config(cfg, unroll=False)
  g_tx, d_tx = gan_settings.optimizers(cfg)
  gen = ToyGenerator(widths=runs.widths(cfg, "g_widths") or DEFAULT_WIDTHS)
  critic = ToyCritic(widths=runs.widths(cfg, "d_widths") or DEFAULT_WIDTHS)
  run_seeds = seeds(cfg)

  def init_one(seed):
    return gan.init_state(config, seed=seed, generator=gen, discriminator=critic, g_tx=g_tx, d_tx=d_tx, data_shape=(2,))

  def make_data():
    iterators = [toy.MixtureIterator(mixture, cfg["batch_size"], s, n_critic=cfg["n_critic"]) for s in run_seeds]
    return iterators[0] if len(iterators) == 1 else multiseed.StackedIterator(iterators)

  info = {"mixture": mixture}
  return runs.Setup(experiment, "toy", gan, dict(cfg), config, run_seeds, init_one, make_data, batch_axis=1, info=info)
