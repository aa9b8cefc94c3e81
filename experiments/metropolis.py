r"""Random-walk Metropolis on the 2-D mixtures: the pre-GAN sampler of seed 002, scored like a GAN.

  python experiments/metropolis.py --dataset=grid25 --workdir=/tmp/metropolis_grid25
  python experiments/metropolis.py --dataset=grid25 --init=origin --workdir=/tmp/metropolis_grid25_origin
  python experiments/metropolis.py --dataset=grid25 --num_chains=1 --samples_per_chain=2500 --thin=100 \
      --workdir=/tmp/metropolis_grid25_one_chain

Metropolis needs what a GAN never sees, the target's (unnormalised) density:
here the exact log-density of the very mixture `experiments/wgan.py` learns
from samples (`jaxgan.metrics.metropolis.from_toy`). ``--num_chains`` chains
start from ``--init`` (``box``: uniform over the square holding every mode
with one unit of margin; ``origin``: all at (0, 0)), run ``--burn_in`` steps,
then keep ``--samples_per_chain`` states, one every ``--thin`` steps. The
``num_chains * samples_per_chain`` kept states are scored with the PacGAN/VEEGAN
protocol of `jaxgan.metrics.modes` (the default 2,500 samples, as for the
GANs) and written to ``mode_metrics.json`` with the acceptance rate, the
number of density evaluations and the wall time (compile included), plus a
scatter plot ``samples.png``.
"""

from __future__ import annotations

import os
import time

import jax
import launch
import numpy as np
from absl import flags

from jaxgan import storage, trainer, viz
from jaxgan.data import toy
from jaxgan.errors import ConfigError
from jaxgan.metrics import metropolis, modes

flags.DEFINE_string("workdir", None, "Output directory (mode_metrics.json, samples.png).", required=True)
flags.DEFINE_enum("dataset", "grid25", sorted(toy.MIXTURES), "2-D mixture to sample.")
flags.DEFINE_integer("seed", 0, "PRNG seed of the initial points and the chains.")
flags.DEFINE_integer("num_chains", 2500, "Independent chains (vmapped).", lower_bound=1)
flags.DEFINE_integer("samples_per_chain", 1, "Kept states per chain.", lower_bound=1)
flags.DEFINE_integer("burn_in", 2000, "Discarded steps per chain before the first kept state.", lower_bound=0)
flags.DEFINE_integer("thin", 1, "Steps per kept state after burn-in.", lower_bound=1)
flags.DEFINE_float(
  "step_size",
  0.0,
  "Proposal std sigma (0: 2.38 / sqrt(2) times the mode std, the "
  "Roberts-Gelman-Gilks optimal scale for one 2-D Gaussian mode).",
  lower_bound=0.0,
)
flags.DEFINE_enum("init", "box", ["box", "origin"], "Where the chains start.")

FLAGS = flags.FLAGS


def initial_points(key: jax.Array, mixture: toy.GaussianMixture2D, num_chains: int, how: str) -> jax.Array:
  """(num_chains, 2) starting points: uniform over the modes' bounding box plus 1, or the origin."""
  if how == "origin":
    return jax.numpy.zeros((num_chains, 2))
  limit = float(np.abs(mixture.means_array()).max()) + 1.0
  return jax.random.uniform(key, (num_chains, 2), minval=-limit, maxval=limit)


def main(argv):
  del argv
  workdir = trainer.prepare_workdir(FLAGS.workdir)
  mixture = toy.get_mixture(FLAGS.dataset)
  density = metropolis.from_toy(mixture)
  num_samples = FLAGS.num_chains * FLAGS.samples_per_chain
  if num_samples > 10_000_000:
    raise ConfigError(f"--num_chains * --samples_per_chain = {num_samples} samples: keep it below 10,000,000")
  step_size = FLAGS.step_size or 2.38 / np.sqrt(2.0) * mixture.std
  init_key, chain_key = jax.random.split(jax.random.PRNGKey(FLAGS.seed))

  start = time.perf_counter()
  init = initial_points(init_key, mixture, FLAGS.num_chains, FLAGS.init)
  result = metropolis.metropolis(
    chain_key,
    density.log_prob,
    init,
    num_samples=FLAGS.samples_per_chain,
    step_size=step_size,
    burn_in=FLAGS.burn_in,
    thin=FLAGS.thin,
  )
  samples = np.asarray(jax.device_get(result.samples)).reshape(-1, 2)
  wall = time.perf_counter() - start

  metrics = modes.mode_metrics(samples, mixture.means_array(), mixture.std)
  steps_per_chain = FLAGS.burn_in + FLAGS.samples_per_chain * FLAGS.thin
  results = {
    "dataset": FLAGS.dataset,
    "sampler": "random-walk Metropolis",
    "init": FLAGS.init,
    "num_chains": FLAGS.num_chains,
    "samples_per_chain": FLAGS.samples_per_chain,
    "burn_in": FLAGS.burn_in,
    "thin": FLAGS.thin,
    "step_size": float(step_size),
    "acceptance_rate": float(np.mean(result.accept_rate)),
    "density_evaluations": FLAGS.num_chains * (steps_per_chain + 1),
    "wall_time_sec": wall,
    **metrics.as_dict(),
  }
  storage.dump_json(os.path.join(workdir, "mode_metrics.json"), results)
  real = np.asarray(mixture.sample(jax.random.PRNGKey(FLAGS.seed + 1), len(samples)))
  lim = float(np.abs(mixture.means_array()).max()) * 1.5
  viz.scatter_2d(
    os.path.join(workdir, "samples.png"),
    real,
    samples,
    means=mixture.means_array(),
    title=f"Metropolis ({FLAGS.init} start) {FLAGS.dataset}\n{metrics}",
    lim=lim,
  )
  print(
    f"{FLAGS.dataset} Metropolis, {FLAGS.num_chains} chains x {steps_per_chain} steps from {FLAGS.init}: "
    f"{metrics}, acceptance {results['acceptance_rate']:.2f} ({wall:.1f} s)"
  )


if __name__ == "__main__":
  launch.run(main)
