r"""Pix2Pix (Isola et al., 2017): paired image-to-image translation.

  python experiments/pix2pix.py --flagfile=experiments/flags/pix2pix_digits_edges.flags --workdir=/tmp/p2p_digits
  python experiments/pix2pix.py --flagfile=experiments/flags/pix2pix_facades.flags \
      --dataset=/data/facades --workdir=/tmp/p2p_facades

Trains a U-Net generator against a PatchGAN discriminator on (input, target)
pairs with the adversarial + 100 * L1 objective. ``--mode=train`` (default)
writes metrics.jsonl, checkpoints (rerunning resumes), periodic
input | output | target strips under samples/, and at the end prints and writes
eval_metrics.json: the mean absolute error (on [-1, 1]) of G's outputs on the
held-out pairs, next to that of the identity map (the input taken as the
prediction). ``--mode=translate`` runs the newest checkpoint of --workdir over
every image in --input_dir and writes the outputs to --output_dir.
"""

from __future__ import annotations

import os

import flag_groups
import jax
import launch
import numpy as np
import translation
from absl import flags, logging

from jaxgan import evaluation, recipes, sampling, trainer, viz
from jaxgan.data import images as images_lib
from jaxgan.data import paired
from jaxgan.errors import ConfigError
from jaxgan.families import pix2pix
from jaxgan.models.pix2pix import NORMS

launch.define_common_flags(default_steps=200000, default_batch=1)
flags.DEFINE_string(
  "dataset",
  paired.DIGIT_EDGES,
  f"'{paired.DIGIT_EDGES}' (offline), a folder of side-by-side A|B images (with train/val "
  "subfolders or not), or an .npz with arrays 'a' and 'b' (uint8, or float in [0, 1] or [-1, 1]).",
)
flags.DEFINE_string("split", "train", "Training split (digits_edges: train; folder: a subfolder).")
flags.DEFINE_string("eval_split", "test", "Held-out split for the strips and the final L1 ('' for none).")
flags.DEFINE_integer("image_size", 256, "Image side (power of two; the U-Net depth is log2 of it).", lower_bound=4)
flags.DEFINE_integer("channels", 0, "Channels for image folders (0: native).", lower_bound=0, upper_bound=3)
flag_groups.model_size(
  widths_help="(one number: the channel count of the first U-Net encoder block / PatchGAN block; default 64)"
)
flags.DEFINE_integer("max_features", 512, "U-Net channel cap.", lower_bound=1)
flags.DEFINE_enum("g_norm", "batch", list(NORMS), "U-Net normalisation.")
flags.DEFINE_bool("innermost_norm", True, "Normalise the 1x1 bottleneck (set false for batch size 1).")
flags.DEFINE_float("g_dropout", 0.5, "Decoder dropout on the first three blocks.", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_bool("skip_connections", True, "U-Net (true) or the paper's plain encoder-decoder (false).")
flag_groups.optimizer(lr=2e-4, b1=0.5, b2=0.999, clipping=False)
flag_groups.adversarial(loss="non_saturating", steps=False, label=False)
flag_groups.discriminator_options()
flags.DEFINE_float("l1_weight", 100.0, "lambda of the L1 term.", lower_bound=0.0)
flag_groups.evaluation(
  eval_samples=1000, grid_size=8, classifier=False, periodic=False, what="held-out pairs (at most)",
  grid_help="Held-out pairs in the sample strips.",
)  # fmt: skip
flag_groups.translation(flip_help="Random left-right mirroring (same for input and target).")
flags.DEFINE_enum(
  "translate_side",
  "full",
  ["full", "left", "right"],
  "translate: use the whole file, or the left/right half of A|B files.",
)
flags.DEFINE_enum(
  "inference",
  "eval",
  ["eval", "paper"],
  "translate: eval (no dropout, running BatchNorm statistics) or paper (dropout on and "
  "test-batch statistics, as Isola et al. run G at test time).",
)

FLAGS = flags.FLAGS
NAME = "pix2pix"
EVAL_TAG = 0xE7A1
_translate = jax.jit(pix2pix.sample, static_argnames="train")


def translate_fn(inference: str, seed: int):
  key = jax.random.fold_in(jax.random.PRNGKey(seed), EVAL_TAG)
  return lambda state, x: _translate(state, x, train=inference == "paper", key=key)


def translate_mode():
  if not FLAGS.input_dir:
    raise ConfigError("--input_dir is required with --mode=translate")
  run = translation.load_for_translation(FLAGS.workdir, NAME)
  shape_a = run.setup.info["shape_a"]
  names, images = paired.load_image_files(FLAGS.input_dir, shape_a[0], shape_a[-1], FLAGS.translate_side)
  translation.check_outputs(FLAGS.output_dir, names)
  fn = translate_fn(FLAGS.inference, int(run.cfg["seed"]))
  out = sampling.batched(lambda x: fn(run.state, x), images_lib.to_float(images), FLAGS.eval_batch)
  paths = translation.write_translations(FLAGS.output_dir, names, out)
  print(
    f"translated {len(paths)} images with the step-{run.step} generator "
    f"({FLAGS.inference} mode) into {os.path.abspath(FLAGS.output_dir)}"
  )


def main(argv):
  del argv
  if FLAGS.mode == "translate":
    return translate_mode()
  setup = recipes.setup(launch.resolved_flags(), experiment=NAME)
  source, held_out = setup.info["source"], setup.info["held_out"]
  evaluator = (
    evaluation.TranslationEvaluator(setup, num_fake=FLAGS.eval_samples, batch_size=FLAGS.eval_batch)
    if held_out is not None
    else None
  )
  workdir = os.path.abspath(FLAGS.workdir)
  strip_source = held_out if held_out is not None else source
  strip_a, strip_b = (images_lib.to_float(x) for x in strip_source.arrays())
  strip_a, strip_b = strip_a[: FLAGS.grid_size], strip_b[: FLAGS.grid_size]
  run_eval = translate_fn("eval", FLAGS.seed)

  def sample_hook(st, step):
    out = np.asarray(run_eval(st, strip_a))
    path = viz.strip_image(
      os.path.join(workdir, "samples", f"step_{step:07d}.png"),
      [strip_a, out, strip_b],
      scale=FLAGS.strip_scale,
      headers=("input " + FLAGS.direction[0], "output G(input)", "target " + FLAGS.direction[-1]),
      title=f"{NAME} {FLAGS.dataset}, {'held-out' if held_out is not None else 'training'} pairs\nG in eval mode",
      step=step,
    )
    logging.info(
      "step %d: strip %s (held-out L1 of these %d: %.4f)", step, path, len(out), float(np.mean(np.abs(out - strip_b)))
    )
    return [path]

  state, wall = launch.train(setup, sample_hook=sample_hook)

  # ---------------------------------------------------------------- final evaluation
  results = {
    "dataset": FLAGS.dataset,
    "direction": FLAGS.direction,
    "step": int(state.step),
    "seed": FLAGS.seed,
    "wall_time_sec_this_process": wall,
  }
  if evaluator is not None:
    scores, floor = evaluator.scores(state), evaluator.floor()
    results.update(
      eval_split=FLAGS.eval_split,
      eval_samples=evaluator.n_fake,
      l1_model_eval=scores["l1_eval"][0],
      l1_model_paper=scores["l1_paper"][0],
      l1_identity=floor["l1_eval"][0],
    )
  launch.write_results(setup.cfg, os.path.join(workdir, "eval_metrics.json"), results)
  if jax.process_index() == 0:
    viz.loss_curves(
      os.path.join(workdir, trainer.METRICS_FILE),
      os.path.join(workdir, "loss_curves.png"),
      keys=("d_loss", "g_adv_loss", "g_l1"),
      title=f"{NAME} {FLAGS.dataset}",
    )
  if evaluator is None:
    print(f"{NAME} step {results['step']}: no held-out split ({wall:.0f} s in this process)")
    return
  identity = results["l1_identity"]
  print(
    f"{NAME} {FLAGS.dataset} step {results['step']}: held-out L1 (mean |G(x) - y| on [-1, 1], "
    f"{results['eval_samples']} pairs) model {results['l1_model_eval']:.4f} (eval mode), "
    f"{results['l1_model_paper']:.4f} (paper mode: dropout + batch statistics); identity map "
    f"{'n/a' if identity is None else f'{identity:.4f}'} ({wall:.0f} s in this process)"
  )


if __name__ == "__main__":
  launch.run(main)
