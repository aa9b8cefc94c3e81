"""What experiments/gan.py and dcgan.py share: their flags and their training run.

* `define_flags` -- the flags of both scripts (dataset, models and their
  widths, loss, label smoothing, D/G step counts, latent distribution, EMA,
  Adam and its schedule, figure cadence, evaluation), with per-script defaults.
* `train(name)` -- builds the run from the parsed flags
  (`jaxgan.recipes.images`), trains it with figures (`SampleWriter`) and the
  optional periodic evaluation, and writes eval.json (pixel-space numbers of
  the samples and, for scale, of held-out real images).
"""

from __future__ import annotations

import os

import flag_groups
import launch
from absl import flags, logging

from jaxgan import evaluation, recipes
from jaxgan.errors import ConfigError
from jaxgan.recipes import images as image_recipe

EVAL_FILE = "eval.json"


def define_flags(*, generator: str, discriminator: str, default_steps: int, default_batch: int) -> None:
  """Defines the flags of experiments/gan.py and experiments/dcgan.py (with their defaults)."""
  launch.define_common_flags(default_steps=default_steps, default_batch=default_batch)
  flag_groups.image_data()
  flag_groups.model_size(
    image_recipe.GENERATORS,
    image_recipe.DISCRIMINATORS,
    generator,
    discriminator,
    g_help="; ".join(f"{k}: {v[1]}" for k, v in image_recipe.G_WIDTHS.items()),
    d_help="; ".join(f"{k}: {v[1]}" for k, v in image_recipe.D_WIDTHS.items()),
  )
  flag_groups.optimizer(lr=2e-4, b1=0.5, b2=0.999)
  flag_groups.adversarial(loss="non_saturating", n_critic=1)
  flag_groups.discriminator_options()
  flags.DEFINE_bool(
    "d_batchnorm",
    True,
    "BatchNorm in the dcgan discriminator (Radford et al.); --nod_batchnorm gives the BatchNorm-free critic of "
    "WGAN-GP (Gulrajani et al., 2017, Sec. 4) and SNGAN (Miyato et al., 2018), every convolution with a bias.",
  )
  flag_groups.latent(latent_dim=100)
  flag_groups.evaluation(
    eval_samples=1000, grid_size=10, what="generated and real images of the histogram and evaluation", min_samples=10
  )


def train(name: str, cfg: dict | None = None) -> dict:
  """Trains the GAN ``cfg`` (default: the parsed flags) describes; returns (and writes to eval.json) the
  pixel-space evaluation.

  Everything that can be wrong with the input (dataset, shapes, widths,
  devices) is checked before the workdir is touched.
  """
  setup = recipes.setup(launch.resolved_flags() if cfg is None else cfg, experiment=name)
  cfg, config, source = setup.cfg, setup.config, setup.info["source"]
  if cfg["batch_size"] > len(source):
    raise ConfigError(f"--batch_size={cfg['batch_size']} exceeds the {len(source)} images of {cfg['dataset']}")
  num_eval = min(cfg["eval_samples"], len(source))
  eval_fn, best_metric, best_mode = evaluation.training_eval(
    setup,
    eval_every=cfg.get("eval_every", 0),
    best_metric=cfg.get("best_metric"),
    classifier_workdir=cfg.get("classifier_workdir"),
    num_samples=num_eval,
  )
  real, _ = image_recipe.reference_images(source, num_eval, cfg["seed"])
  workdir = os.path.abspath(cfg["workdir"])
  hook = image_recipe.SampleWriter(workdir, name, cfg, config, real)
  logging.info(
    "%s: %s -> %s images, G %s, D %s",
    name,
    cfg["dataset"],
    "x".join(map(str, setup.info["image_shape"])),
    cfg["generator"],
    cfg["discriminator"],
  )
  state, wall = launch.train(setup, sample_hook=hook, eval_fn=eval_fn, best_metric=best_metric, best_mode=best_mode)
  results = image_recipe.pixel_report(state, cfg, config, source)
  results["wall_time_sec_this_process"] = wall
  launch.write_results(cfg, os.path.join(workdir, EVAL_FILE), results)
  g = results["generated"]
  line = (
    f"{name} {cfg['dataset']} step {results['step']}: pixel FD "
    f"{g.get('pixel_frechet_distance', float('nan')):.2f}, precision {g['pixel_precision']:.3f}, "
    f"recall {g['pixel_recall']:.3f}, pixel-value W1 {g['pixel_value_w1']:.3f}"
  )
  if "real_held_out" in results:
    r = results["real_held_out"]
    line += (
      f" (held-out real: FD {r.get('pixel_frechet_distance', float('nan')):.2f}, precision "
      f"{r['pixel_precision']:.3f}, recall {r['pixel_recall']:.3f})"
    )
  if "nn_classes_covered" in g:
    line += f"; 1-NN classes covered {g['nn_classes_covered']}/{len(g['nn_class_counts'])}"
  print(f"{line}; {wall:.0f} s in this process")
  return results
