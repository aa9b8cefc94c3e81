r"""CycleGAN (Zhu et al., 2017): unpaired image-to-image translation.

  python experiments/cyclegan.py --flagfile=experiments/flags/cyclegan_digits.flags --workdir=/tmp/cyclegan_digits
  python experiments/cyclegan.py --flagfile=experiments/flags/cyclegan_horse2zebra.flags \
      --data_dir=/data/tfds --workdir=/tmp/horse2zebra

Trains G: A -> B and F: B -> A (ResNet generators) against two PatchGAN
discriminators with the least-squares GAN loss, the cycle loss (lambda 10) and
the identity loss (0.5 lambda), with a 50-image history pool per direction.
``--mode=train`` writes metrics.jsonl, checkpoints (rerunning resumes) and
periodic strips under samples/ (columns a | G(a) | F(G(a)) | b | F(b) | G(F(b))
on held-out images), and at the end prints and writes eval_metrics.json: the
held-out cycle-reconstruction errors mean |F(G(a)) - a| and mean |G(F(b)) - b|
(on [-1, 1]). For ``digits_edges``, whose test images are paired, it also
reports the L1 between G(a) and the true outline of a, next to the identity map's.
``--mode=translate`` runs the newest checkpoint over --input_dir
(--direction AtoB or BtoA) and writes the outputs to --output_dir.
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
from jaxgan.families import cyclegan

launch.define_common_flags(default_steps=200000, default_batch=1)
flags.DEFINE_string(
  "dataset",
  paired.DIGIT_EDGES,
  f"'{paired.DIGIT_EDGES}' (offline), a TFDS cycle_gan/<name> dataset, or a folder with "
  "trainA/trainB (and testA/testB) subfolders.",
)
flags.DEFINE_string("data_dir", None, "TFDS data directory (never downloaded into).")
flags.DEFINE_string("split", "train", "Training split (a folder: the trainA/trainB subfolders of 'train').")
flags.DEFINE_string("eval_split", "test", "Held-out split for the strips and the final cycle errors ('' for none).")
flags.DEFINE_integer("image_size", 256, "Image side (divisible by 4).", lower_bound=4)
flags.DEFINE_integer("channels", 0, "Channels of both domains (0: native).", lower_bound=0, upper_bound=3)
flag_groups.model_size(
  widths_help="(one number: the channel count of the generator's c7s1 block / the first PatchGAN block, doubled by "
  "each down-sampling; default 64)"
)
flags.DEFINE_integer("num_blocks", 9, "Residual blocks (the paper: 6 at 128 px, 9 at 256 px).", lower_bound=0)
flag_groups.optimizer(lr=2e-4, b1=0.5, b2=0.999, clipping=False)
flag_groups.adversarial(loss="least_squares", steps=False, label=False, stateful=False)
flag_groups.discriminator_options()
flags.DEFINE_float("cycle_weight", 10.0, "Cycle-loss weight lambda (both directions).", lower_bound=0.0)
flags.DEFINE_float("identity_weight", 0.5, "Identity-loss weight, relative to lambda (0: off).", lower_bound=0.0)
flags.DEFINE_integer("pool_size", 50, "History pool of generated images per direction (0: off).", lower_bound=0)
flag_groups.evaluation(
  eval_samples=1000, grid_size=6, classifier=False, periodic=False, what="held-out images per domain (at most)",
  grid_help="Held-out images per domain in the sample strips.",
)  # fmt: skip
flag_groups.translation(flip_help="Random left-right mirroring.")

FLAGS = flags.FLAGS
NAME = "cyclegan"
_translate = jax.jit(cyclegan.sample, static_argnames=("direction", "train"))


def uint8_arrays(source, n):
  return np.stack([source[i]["image"] for i in range(min(n, len(source)))])


def translate_mode():
  if not FLAGS.input_dir:
    raise ConfigError("--input_dir is required with --mode=translate")
  run = translation.load_for_translation(FLAGS.workdir, NAME)
  source_a, source_b = run.setup.info["sources"]
  shape = (source_a if FLAGS.direction == "AtoB" else source_b).images_shape
  names, images = paired.load_image_files(FLAGS.input_dir, shape[0], shape[-1])
  translation.check_outputs(FLAGS.output_dir, names)
  out = sampling.batched(
    lambda x: _translate(run.state, x, FLAGS.direction), images_lib.to_float(images), FLAGS.eval_batch
  )
  paths = translation.write_translations(FLAGS.output_dir, names, out)
  print(
    f"translated {len(paths)} images {FLAGS.direction} with the step-{run.step} "
    f"generators into {os.path.abspath(FLAGS.output_dir)}"
  )


def main(argv):
  del argv
  if FLAGS.mode == "translate":
    return translate_mode()
  setup = recipes.setup(launch.resolved_flags(), experiment=NAME)
  test_a, test_b = setup.info["test_sources"]
  evaluator = evaluation.TranslationEvaluator(setup, num_fake=FLAGS.eval_samples, batch_size=FLAGS.eval_batch)
  workdir = os.path.abspath(FLAGS.workdir)
  strip_a = images_lib.to_float(uint8_arrays(test_a, FLAGS.grid_size))
  strip_b = images_lib.to_float(uint8_arrays(test_b, FLAGS.grid_size))

  def sample_hook(st, step):
    fake_b = np.asarray(_translate(st, strip_a, "AtoB"))
    fake_a = np.asarray(_translate(st, strip_b, "BtoA"))
    rec_a = np.asarray(_translate(st, fake_b, "BtoA"))
    rec_b = np.asarray(_translate(st, fake_a, "AtoB"))
    n = min(len(strip_a), len(strip_b))
    path = viz.strip_image(
      os.path.join(workdir, "samples", f"step_{step:07d}.png"),
      [x[:n] for x in (strip_a, fake_b, rec_a, strip_b, fake_a, rec_b)],
      scale=FLAGS.strip_scale,
      headers=("A", "G(A)", "F(G(A))", "B", "F(B)", "G(F(B))"),
      title=f"{NAME} {FLAGS.dataset}\nG: A->B, F: B->A",
      step=step,
    )
    logging.info(
      "step %d: strip %s (cycle error of these: A %.4f, B %.4f)",
      step,
      path,
      float(np.mean(np.abs(rec_a - strip_a))),
      float(np.mean(np.abs(rec_b - strip_b))),
    )
    return [path]

  state, wall = launch.train(setup, sample_hook=sample_hook)

  # ---------------------------------------------------------------- final evaluation
  scores, floor = evaluator.scores(state), evaluator.floor()
  results = {
    "dataset": FLAGS.dataset,
    "step": int(state.step),
    "seed": FLAGS.seed,
    "eval_split": FLAGS.eval_split or FLAGS.split,
    "num_eval_a": len(evaluator.a),
    "num_eval_b": len(evaluator.b),
    **{name: value for name, (value, _) in scores.items()},
    "wall_time_sec_this_process": wall,
  }
  results["cycle_error"] = 0.5 * (results["cycle_error_a"] + results["cycle_error_b"])
  if "l1_g_vs_true_b" in scores:
    results["l1_identity"] = floor["l1_g_vs_true_b"][0]
  launch.write_results(setup.cfg, os.path.join(workdir, "eval_metrics.json"), results)
  if jax.process_index() == 0:
    viz.loss_curves(
      os.path.join(workdir, trainer.METRICS_FILE),
      os.path.join(workdir, "loss_curves.png"),
      keys=("d_loss", "g_adv_ab", "g_adv_ba", "cycle_a", "cycle_b"),
      title=f"{NAME} {FLAGS.dataset}",
    )
  extra = ""
  if "l1_g_vs_true_b" in results:
    extra = (
      f"; L1 to the true pairs G(a)-b {results['l1_g_vs_true_b']:.4f}, F(b)-a "
      f"{results['l1_f_vs_true_a']:.4f}, identity map {results['l1_identity']:.4f}"
    )
  print(
    f"{NAME} {FLAGS.dataset} step {results['step']}: {results['eval_split']} cycle error (mean abs on [-1, 1]) "
    f"A->B->A {results['cycle_error_a']:.4f}, B->A->B {results['cycle_error_b']:.4f}, mean "
    f"{results['cycle_error']:.4f}{extra} ({wall:.0f} s in this process)"
  )


if __name__ == "__main__":
  launch.run(main)
