r"""WGAN (weight clipping) and WGAN-GP on the 2-D Gaussian mixtures.

  python experiments/wgan.py --flagfile=experiments/flags/wgan_gp_grid25.flags --workdir=/tmp/wgan_gp_grid25

Trains an MLP generator against an MLP critic, writes metrics.jsonl, scatter
plots of real vs generated points and checkpoints to --workdir (rerunning the
same command resumes), and at the end prints and writes the PacGAN/VEEGAN mode
metrics (modes captured, % high-quality samples, reverse KL) to
mode_metrics.json.
"""

from __future__ import annotations

import os

import flag_groups
import jax
import launch
import numpy as np
from absl import flags, logging

from jaxgan import recipes, sampling, trainer, viz
from jaxgan.data import toy
from jaxgan.errors import ConfigError
from jaxgan.families import gan
from jaxgan.metrics import modes
from jaxgan.recipes import toy as toy_recipe

launch.define_common_flags(default_steps=20000, default_batch=256)
flags.DEFINE_enum("dataset", "grid25", sorted(toy.MIXTURES), "2-D mixture to learn.")
flag_groups.model_size(widths_help="(hidden widths of the ReLU MLP, one per layer; empty: 512,512,512)")
flag_groups.optimizer(lr=1e-4, b1=0.5, b2=0.9)
flag_groups.adversarial(loss="wasserstein", n_critic=5, images=False)
flag_groups.discriminator_options(images=False)
flag_groups.latent(latent_dim=2)
flag_groups.evaluation(
  eval_samples=modes.NUM_EVAL_SAMPLES, grid_size=None, classifier=False, periodic=False, what="points"
)
flags.DEFINE_integer(
  "num_seeds",
  1,
  "Independent runs with seeds --seed .. --seed+K-1, trained together in one "
  "vmapped compiled step (jaxgan.multiseed); run k equals a --seed=seed+k run.",
  lower_bound=1,
)

FLAGS = flags.FLAGS
EVAL_TAG = 0xE7A1


def sample_points(state, config: gan.Config, key: jax.Array, n: int, use_ema: bool) -> np.ndarray:
  z = gan.sample_latent(key, n, config)
  return sampling.generate(state, np.asarray(z), use_ema=use_ema, batch_size=n)


def main(argv):
  del argv
  setup = recipes.setup(launch.resolved_flags(), experiment=toy_recipe.EXPERIMENT)
  config, mixture = setup.config, setup.info["mixture"]
  if FLAGS.batch_size % FLAGS.pack:
    raise ConfigError(f"--batch_size={FLAGS.batch_size} is not divisible by --pack={FLAGS.pack}")

  def runs(st):
    """(seed, single-run state, eval key) per run; a --num_seeds run's k-th equals a --seed=seed+k run."""
    return [(s, one, jax.random.fold_in(jax.random.PRNGKey(s), EVAL_TAG)) for s, one in setup.single_states(st)]

  workdir = os.path.abspath(FLAGS.workdir)
  eval_key = jax.random.fold_in(jax.random.PRNGKey(FLAGS.seed), EVAL_TAG)
  real_eval = np.asarray(mixture.sample(jax.random.fold_in(eval_key, 1), FLAGS.eval_samples))
  lim = 1.3 * float(np.max(np.abs(mixture.means_array()))) + 0.5

  def sample_hook(st, step):
    _, st, eval_key = runs(st)[0]  # figures show the first seed's run
    fake = sample_points(st, config, eval_key, FLAGS.eval_samples, use_ema=True)
    m = modes.mode_metrics(fake, mixture.means_array(), mixture.std)
    paths = []
    if jax.process_index() == 0:
      paths.append(
        viz.scatter_2d(
          os.path.join(workdir, "samples", f"step_{step:07d}.png"),
          real_eval,
          fake,
          means=mixture.means_array(),
          title=f"{setup.experiment} {FLAGS.dataset}\n{m}",
          step=step,
          ema=st.ema_params is not None,
          lim=lim,
        )
      )
    logging.info("step %d: %s", step, m)
    return paths

  state, wall = launch.train(setup, sample_hook=sample_hook)

  # ---------------------------------------------------------------- final evaluation
  per_run = []
  for seed, st, eval_key in runs(state):
    results = {"dataset": FLAGS.dataset, "step": int(state.step), "seed": seed, "wall_time_sec_this_process": wall}
    for label, use_ema in (("generator", False), ("ema", True)):
      if use_ema and st.ema_params is None:
        continue
      fake = sample_points(st, config, eval_key, FLAGS.eval_samples, use_ema=use_ema)
      results[label] = modes.mode_metrics(fake, mixture.means_array(), mixture.std).as_dict()
    results["reported"] = "ema" if "ema" in results else "generator"
    per_run.append(results)
  results = per_run[0]
  if FLAGS.num_seeds > 1:
    results = {
      "dataset": FLAGS.dataset,
      "step": int(state.step),
      "seeds": list(setup.seeds),
      "runs": per_run,
      "wall_time_sec_this_process": wall,
      "reported": per_run[0]["reported"],
    }
    for key in ("modes_captured", "high_quality_percent", "reverse_kl"):
      values = [r[r["reported"]][key] for r in per_run]
      results[f"{key}_mean"], results[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
  launch.write_results(setup.cfg, os.path.join(workdir, "mode_metrics.json"), results)
  if jax.process_index() == 0:
    viz.loss_curves(
      os.path.join(workdir, trainer.METRICS_FILE),
      os.path.join(workdir, "loss_curves.png"),
      keys=("d_loss", "g_loss", "wasserstein_estimate"),
      title=f"{setup.experiment} {FLAGS.dataset}",
      ylabel="loss / critic's W1 estimate",
    )
  for r in per_run:
    m = r[r["reported"]]
    which = f" seed {r['seed']}" if FLAGS.num_seeds > 1 else ""
    print(
      f"{FLAGS.dataset}{which} step {r['step']}: modes {m['modes_captured']}/{m['num_modes']}, "
      f"high quality {m['high_quality_percent']:.1f}%, reverse KL {m['reverse_kl']:.4f} "
      f"({r['reported']} parameters; {wall:.0f} s in this process)"
    )


if __name__ == "__main__":
  launch.run(main)
