r"""WGAN (weight clipping) and WGAN-GP on the 2-D Gaussian mixtures.

  python experiments/wgan.py --flagfile=experiments/flags/wgan_gp_grid25.flags --workdir=/tmp/wgan_gp_grid25

Trains an MLP generator against an MLP critic, writes metrics.jsonl, scatter
plots of real vs generated points and checkpoints to --workdir (rerunning the
same command resumes), and at the end prints and writes the PacGAN/VEEGAN mode
metrics (modes captured, % high-quality samples, reverse KL) to
mode_metrics.json.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import flags, logging

from jaxgan import cli, losses, multiseed, parallel, steps, trainer, viz
from jaxgan import runs as runs_lib
from jaxgan.data import toy
from jaxgan.errors import ConfigError
from jaxgan.metrics import modes
from jaxgan.state import create_gan_state

cli.define_common_flags(default_steps=20000, default_batch=256)
flags.DEFINE_enum("dataset", "grid25", sorted(toy.MIXTURES), "2-D mixture to learn.")
flags.DEFINE_enum("loss", "wasserstein", sorted(losses.LOSSES), "Adversarial loss.")
flags.DEFINE_integer("n_critic", 5, "Critic updates per generator update.", lower_bound=1)
flags.DEFINE_float("gp_weight", 0.0, "WGAN-GP lambda (0: no gradient penalty).", lower_bound=0.0)
flags.DEFINE_float("clip_value", 0.0, "Critic weight clipping to [-c, c] (0: no clipping).", lower_bound=0.0)
flags.DEFINE_enum("optimizer", "adam", ["adam", "rmsprop"], "Optimiser of both networks.")
flags.DEFINE_float("lr", 1e-4, "Learning rate of both networks.", lower_bound=0.0)
flags.DEFINE_float("b1", 0.5, "Adam beta1.")
flags.DEFINE_float("b2", 0.9, "Adam beta2.")
flags.DEFINE_enum(
  "lr_schedule",
  "constant",
  ["constant", "linear_decay"],
  "constant, or constant then linear decay to 0 (both networks).",
)
flags.DEFINE_float(
  "decay_start",
  0.0,
  "With linear_decay: fraction of the run after which the decay starts.",
  lower_bound=0.0,
  upper_bound=1.0,
)
flags.DEFINE_integer("latent_dim", 2, "Size of z.", lower_bound=1)
flags.DEFINE_enum("latent_dist", "normal", list(steps.LATENT_DISTRIBUTIONS), "Distribution of z.")
flags.DEFINE_integer("width", 512, "Hidden units per layer of the critic (and of G unless --g_width).", lower_bound=1)
flags.DEFINE_integer("depth", 3, "Hidden layers of the critic (and of G unless --g_depth).", lower_bound=1)
flags.DEFINE_integer("g_width", 0, "Hidden units per generator layer (0: --width).", lower_bound=0)
flags.DEFINE_integer("g_depth", 0, "Generator hidden layers (0: --depth).", lower_bound=0)
flags.DEFINE_float(
  "ema_decay",
  0.0,
  "Generator EMA decay (0: off); samples and metrics use the EMA.",
  lower_bound=0.0,
  upper_bound=0.999999,
)
flags.DEFINE_integer("pack", 1, "PacGAN packing degree: the critic judges this many samples jointly.", lower_bound=1)
flags.DEFINE_integer("eval_samples", modes.NUM_EVAL_SAMPLES, "Samples for the mode metrics.", lower_bound=1)
flags.DEFINE_integer(
  "num_seeds",
  1,
  "Independent runs with seeds --seed .. --seed+K-1, trained together in one "
  "vmapped compiled step (jaxgan.multiseed); run k equals a --seed=seed+k run.",
  lower_bound=1,
)

FLAGS = flags.FLAGS
NAME = runs_lib.TOY_NAME


def sample_points(state, config: steps.StepConfig, key: jax.Array, n: int, use_ema: bool) -> np.ndarray:
  z = steps.sample_latent(key, n, config)
  return np.asarray(jax.jit(steps.generate, static_argnames=("use_ema", "train"))(state, z, use_ema=use_ema))


def main(argv):
  del argv
  mixture = toy.get_mixture(FLAGS.dataset)
  run_flags = {**cli.resolved_flags(), "experiment": NAME}  # flags.json: experiments/evaluate.py rebuilds the run
  config = runs_lib.toy_step_config(run_flags)
  mesh = parallel.make_data_mesh(FLAGS.num_devices)
  parallel.check_batch_divisible(FLAGS.batch_size, mesh)
  if FLAGS.batch_size % FLAGS.pack:
    raise ConfigError(f"--batch_size={FLAGS.batch_size} is not divisible by --pack={FLAGS.pack}")

  seeds = runs_lib.toy_seeds(run_flags)
  state_kwargs = runs_lib.toy_state_kwargs(run_flags)
  iterators = [toy.MixtureIterator(mixture, FLAGS.batch_size, s, n_critic=FLAGS.n_critic) for s in seeds]
  if FLAGS.num_seeds == 1:  # the single-seed path, unchanged
    state, data, batch_axis = create_gan_state(seed=FLAGS.seed, **state_kwargs), iterators[0], 1
    train_step = steps.make_train_step(
      config, state_sharding=parallel.replicated(mesh), batch_sharding=parallel.batch_sharded(mesh, batch_axis=1)
    )
  else:  # K runs stacked on a leading axis; batches are (K, n_critic, B, 2)
    state, data, batch_axis = (
      multiseed.create_multiseed_state(seeds, **state_kwargs),
      multiseed.StackedIterator(iterators),
      2,
    )
    train_step = multiseed.make_multiseed_train_step(
      config,
      flat_metrics=True,
      state_sharding=parallel.replicated(mesh),
      batch_sharding=parallel.batch_sharded(mesh, batch_axis=2),
    )

  def runs(st):
    """(seed, single-run state, eval key) per run; a --num_seeds run's k-th equals a --seed=seed+k run."""
    singles = [st] if FLAGS.num_seeds == 1 else [multiseed.unstack_state(st, k) for k in range(FLAGS.num_seeds)]
    return [(s, one, jax.random.fold_in(jax.random.PRNGKey(s), 0xE7A1)) for s, one in zip(seeds, singles)]

  workdir = os.path.abspath(FLAGS.workdir)
  eval_key = jax.random.fold_in(jax.random.PRNGKey(FLAGS.seed), 0xE7A1)
  real_eval = np.asarray(mixture.sample(jax.random.fold_in(eval_key, 1), FLAGS.eval_samples))
  lim = 1.3 * float(np.max(np.abs(mixture.means_array()))) + 0.5

  def sample_hook(st, step):
    _, st, eval_key = runs(st)[0]  # figures show the first seed's run
    fake = sample_points(st, config, eval_key, FLAGS.eval_samples, use_ema=True)
    m = modes.mode_metrics(fake, mixture.means_array(), mixture.std)
    if jax.process_index() == 0:
      viz.scatter_2d(
        os.path.join(workdir, "samples", f"step_{step:07d}.png"),
        real_eval,
        fake,
        means=mixture.means_array(),
        title=f"{FLAGS.dataset} step {step}: {m}",
        lim=lim,
      )
    logging.info("step %d: %s", step, m)

  tconfig = trainer.TrainerConfig(
    workdir=workdir,
    num_steps=FLAGS.num_steps,
    log_every=FLAGS.log_every,
    checkpoint_every=FLAGS.checkpoint_every,
    sample_every=FLAGS.sample_every,
    keep_checkpoints=FLAGS.keep_checkpoints,
    skip_nonfinite=FLAGS.skip_nonfinite,
  )
  start = time.perf_counter()
  state = trainer.fit(
    name=NAME,
    state=state,
    train_step=train_step,
    data=data,
    config=tconfig,
    run_flags=run_flags,
    mesh=mesh,
    batch_axis=batch_axis,
    sample_hook=sample_hook,
  )
  wall = time.perf_counter() - start

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
      "seeds": seeds,
      "runs": per_run,
      "wall_time_sec_this_process": wall,
      "reported": per_run[0]["reported"],
    }
    for key in ("modes_captured", "high_quality_percent", "reverse_kl"):
      values = [r[r["reported"]][key] for r in per_run]
      results[f"{key}_mean"], results[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "mode_metrics.json"), "w") as f:
      json.dump(results, f, indent=2)
    viz.loss_curves(
      os.path.join(workdir, trainer.METRICS_FILE),
      os.path.join(workdir, "loss_curves.png"),
      keys=("d_loss", "g_loss", "wasserstein_estimate"),
      title=f"{NAME} {FLAGS.dataset}",
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
  cli.run(main)
