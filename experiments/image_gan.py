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

import jax
import launch
from absl import flags, logging

from jaxgan import evaluation, losses, recipes, storage
from jaxgan.errors import ConfigError
from jaxgan.families import gan
from jaxgan.recipes import images as image_recipe

EVAL_FILE = "eval.json"


def define_flags(*, generator: str, discriminator: str, default_steps: int, default_batch: int) -> None:
  """Defines the flags of experiments/gan.py and experiments/dcgan.py (with their defaults)."""
  launch.define_common_flags(default_steps=default_steps, default_batch=default_batch)
  flags.DEFINE_string(
    "dataset",
    "digits",
    "digits (offline, 8x8), mnist, fashion_mnist, cifar10, svhn_cropped, celeb_a "
    "(64x64), any TFDS image dataset name, a .npz file or an image folder.",
  )
  flags.DEFINE_string("data_dir", None, "TFDS data directory holding the prepared dataset (never downloaded into).")
  flags.DEFINE_string("split", "train", "Split to train on.")
  flags.DEFINE_integer("image_size", 0, "Model image height = width (0: the data's).", lower_bound=0)
  flags.DEFINE_integer("channels", 0, "Model image channels, 1 or 3 (0: the data's).", lower_bound=0)
  flags.DEFINE_bool(
    "convert_data",
    False,
    "Resize / convert the data's channels to --image_size and --channels instead of stopping when they differ.",
  )
  flags.DEFINE_enum("generator", generator, sorted(image_recipe.GENERATORS), "Generator (registry name).")
  flags.DEFINE_enum(
    "discriminator", discriminator, sorted(image_recipe.DISCRIMINATORS), "Discriminator (registry name)."
  )
  flags.DEFINE_list(
    "g_widths",
    [],
    "Generator widths (empty: the model's defaults): "
    + "; ".join(f"{k}: {v[1]}" for k, v in image_recipe.G_WIDTHS.items()),
  )
  flags.DEFINE_list(
    "d_widths",
    [],
    "Discriminator widths (empty: the model's defaults): "
    + "; ".join(f"{k}: {v[1]}" for k, v in image_recipe.D_WIDTHS.items()),
  )
  flags.DEFINE_enum("loss", "non_saturating", sorted(losses.LOSSES), "Adversarial loss.")
  flags.DEFINE_float("real_label", 1.0, "Target of real samples; 0.9 is one-sided label smoothing.")
  flags.DEFINE_integer("n_critic", 1, "D updates per iteration (k of Goodfellow et al.'s Algorithm 1).", lower_bound=1)
  flags.DEFINE_integer("n_gen", 1, "G updates per iteration.", lower_bound=1)
  flags.DEFINE_enum("latent_dist", "normal", list(gan.LATENT_DISTRIBUTIONS), "z ~ N(0, I) or U(-1, 1)^d.")
  flags.DEFINE_integer("latent_dim", 100, "Size of z.", lower_bound=1)
  flags.DEFINE_float(
    "ema_decay",
    0.0,
    "Generator EMA decay (0: off); figures and evaluation use the EMA.",
    lower_bound=0.0,
    upper_bound=0.999999,
  )
  flags.DEFINE_float("lr", 2e-4, "Adam learning rate (both networks unless --d_lr).", lower_bound=0.0)
  flags.DEFINE_float("d_lr", 0.0, "Discriminator learning rate (0: --lr).", lower_bound=0.0)
  flags.DEFINE_float("b1", 0.5, "Adam beta1.")
  flags.DEFINE_float("b2", 0.999, "Adam beta2.")
  flags.DEFINE_enum(
    "lr_schedule",
    "constant",
    ["constant", "linear_decay", "cosine"],
    "Learning-rate schedule over each network's updates.",
  )
  flags.DEFINE_float(
    "decay_start",
    0.0,
    "linear_decay / cosine: fraction of the run before the decay starts.",
    lower_bound=0.0,
    upper_bound=1.0,
  )
  flags.DEFINE_integer("grid_size", 10, "The sample grid is grid_size x grid_size images.", lower_bound=1)
  flags.DEFINE_integer(
    "eval_samples", 1000, "Generated and real images for the histogram and evaluation.", lower_bound=10
  )
  launch.define_eval_flags(classifier=True)


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
  if jax.process_index() == 0:
    storage.dump_json(os.path.join(workdir, EVAL_FILE), results)
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
