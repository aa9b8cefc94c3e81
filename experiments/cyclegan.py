r"""CycleGAN (Zhu et al., 2017): unpaired image-to-image translation.

  python experiments/cyclegan.py --flagfile=experiments/flags/cyclegan_digits.flags --workdir=/tmp/cyclegan_digits
  python experiments/cyclegan.py --flagfile=experiments/flags/cyclegan_horse2zebra.flags \
      --data_dir=/data/tfds --workdir=/tmp/horse2zebra

Trains G: A -> B and F: B -> A (ResNet generators) against two PatchGAN
discriminators with the least-squares GAN loss, the cycle loss (lambda 10) and
the identity loss (0.5 lambda), with a 50-image history pool per direction.
``--mode=train`` writes metrics.jsonl, checkpoints (rerunning resumes) and
periodic strips under samples/ (rows a | G(a) | F(G(a)), then b | F(b) | G(F(b))
on held-out images), and at the end prints and writes eval_metrics.json: the
held-out cycle-reconstruction errors mean |F(G(a)) - a| and mean |G(F(b)) - b|
(on [-1, 1]). For ``digits_edges``, whose test images are paired, it also
reports the L1 between G(a) and the true outline of a, next to the identity map's.
``--mode=translate`` runs the newest checkpoint over --input_dir
(--translate_direction AtoB or BtoA) and writes the outputs to --output_dir.
"""

from __future__ import annotations

import json
import os
import time

import i2i_common
import jax
import numpy as np
import optax
from absl import flags, logging

from jaxgan import cli, image2image, losses, parallel, trainer, viz
from jaxgan.data import paired
from jaxgan.errors import ConfigError
from jaxgan.models.cyclegan import CycleGANDiscriminator, ResNetGenerator

cli.define_common_flags(default_steps=200000, default_batch=1)
i2i_common.define_i2i_flags(num_strip=6, flip_help="Random left-right mirroring.", eval_what="images per domain")
flags.DEFINE_string(
  "dataset",
  paired.DIGIT_EDGES,
  f"'{paired.DIGIT_EDGES}' (offline), a TFDS cycle_gan/<name> dataset, or a folder with "
  "trainA/trainB (and testA/testB) subfolders.",
)
flags.DEFINE_string("data_dir", None, "TFDS data directory (never downloaded into).")
flags.DEFINE_bool("evaluate", True, "Use the test split for the strips and the final cycle errors.")
flags.DEFINE_integer("image_size", 256, "Image side (divisible by 4).", lower_bound=4)
flags.DEFINE_integer("channels", 0, "Channels of both domains (0: native).", lower_bound=0, upper_bound=3)
flags.DEFINE_integer("base_features", 64, "Generator channels of c7s1 (doubled by each down-sampling).", lower_bound=1)
flags.DEFINE_integer("num_blocks", 9, "Residual blocks (the paper: 6 at 128 px, 9 at 256 px).", lower_bound=0)
flags.DEFINE_enum("loss", "least_squares", sorted(losses.LOSSES), "Adversarial loss (the paper: least squares).")
flags.DEFINE_float("lambda_cycle", 10.0, "Cycle-loss weight lambda (both directions).", lower_bound=0.0)
flags.DEFINE_float("lambda_identity", 0.5, "Identity-loss weight, relative to lambda (0: off).", lower_bound=0.0)
flags.DEFINE_integer("pool_size", 50, "History pool of generated images per direction (0: off).", lower_bound=0)
flags.DEFINE_enum("translate_direction", "AtoB", ["AtoB", "BtoA"], "translate: G (AtoB) or F (BtoA).")

FLAGS = flags.FLAGS
NAME = "cyclegan"


def open_sources(split):
  try:
    return paired.make_unpaired_sources(FLAGS.dataset, split, FLAGS.data_dir, FLAGS.image_size, FLAGS.channels or None)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def build_state(shape_a, shape_b, num_steps):
  lr = image2image.constant_then_linear_decay(FLAGS.lr, max(num_steps - FLAGS.decay_steps, 0), FLAGS.decay_steps)
  tx = optax.adam(lr, b1=FLAGS.b1, b2=FLAGS.b2)

  def generator(channels):
    return ResNetGenerator(channels=channels, base_features=FLAGS.base_features, num_blocks=FLAGS.num_blocks)

  def discriminator():
    return CycleGANDiscriminator(patch_size=int(FLAGS.patch_size), base_features=FLAGS.d_base_features)

  if shape_a[0] % 4 or shape_a[1] % 4:
    raise ConfigError(f"--image_size must be divisible by 4, got {shape_a[0]}x{shape_a[1]}")
  return image2image.create_cyclegan_state(
    seed=FLAGS.seed,
    generator_ab=generator(shape_b[-1]),
    generator_ba=generator(shape_a[-1]),
    discriminator_a=discriminator(),
    discriminator_b=discriminator(),
    g_tx=tx,
    d_tx=tx,
    shape_a=shape_a,
    shape_b=shape_b,
    pool_size=FLAGS.pool_size,
  )


def uint8_arrays(source, n):
  return np.stack([source[i]["image"] for i in range(min(n, len(source)))])


def make_translator():
  fn = jax.jit(image2image.cyclegan_translate, static_argnames=("direction", "train"))
  return lambda state, x, direction: fn(state, x, direction)


def translate_mode():
  if not FLAGS.input_dir:
    raise ConfigError("--input_dir is required with --mode=translate")
  i2i_common.require_checkpoint(FLAGS.workdir)
  source_a, source_b = open_sources("train")
  shape = (source_a if FLAGS.translate_direction == "AtoB" else source_b).images_shape
  names, images = paired.load_image_files(FLAGS.input_dir, shape[0], shape[-1])
  i2i_common.check_outputs(FLAGS.output_dir, names)
  state = build_state(source_a.images_shape, source_b.images_shape, FLAGS.num_steps)
  state = i2i_common.restore_for_inference(FLAGS.workdir, NAME, state)
  run = make_translator()
  out = i2i_common.batched(
    lambda x: run(state, x, FLAGS.translate_direction), i2i_common.to_float(images), FLAGS.eval_batch
  )
  paths = i2i_common.write_translations(FLAGS.output_dir, names, out)
  print(
    f"translated {len(paths)} images {FLAGS.translate_direction} with the step-{int(state.step)} "
    f"generators into {os.path.abspath(FLAGS.output_dir)}"
  )


def main(argv):
  del argv
  if FLAGS.mode == "translate":
    return translate_mode()
  source_a, source_b = open_sources("train")
  test_a, test_b = open_sources("test") if FLAGS.evaluate else (source_a, source_b)
  mesh = parallel.make_data_mesh(FLAGS.num_devices)
  parallel.check_batch_divisible(FLAGS.batch_size, mesh)
  jitter_size = (FLAGS.jitter_size or image2image.default_jitter_size(FLAGS.image_size)) if FLAGS.jitter else 0
  config = image2image.CycleGANConfig(
    loss=FLAGS.loss,
    lambda_a=FLAGS.lambda_cycle,
    lambda_b=FLAGS.lambda_cycle,
    lambda_identity=FLAGS.lambda_identity,
    jitter_size=jitter_size,
    jitter_method=FLAGS.jitter_method,
    flip=FLAGS.flip,
    skip_nonfinite=FLAGS.skip_nonfinite,
  )
  if config.lambda_identity and source_a.images_shape[-1] != source_b.images_shape[-1]:
    raise ConfigError(
      "the identity loss needs domains with equal channel counts: pass --lambda_identity=0 or --channels"
    )
  state = build_state(source_a.images_shape, source_b.images_shape, FLAGS.num_steps)
  train_step = image2image.make_cyclegan_train_step(
    config, state_sharding=parallel.replicated(mesh), batch_sharding=parallel.batch_sharded(mesh)
  )
  data = paired.UnpairedIterator(source_a, source_b, FLAGS.batch_size, FLAGS.seed)
  workdir = os.path.abspath(FLAGS.workdir)
  strip_a = i2i_common.to_float(uint8_arrays(test_a, FLAGS.num_strip))
  strip_b = i2i_common.to_float(uint8_arrays(test_b, FLAGS.num_strip))
  translate = make_translator()

  def sample_hook(st, step):
    fake_b = np.asarray(translate(st, strip_a, "AtoB"))
    fake_a = np.asarray(translate(st, strip_b, "BtoA"))
    rec_a = np.asarray(translate(st, fake_b, "BtoA"))
    rec_b = np.asarray(translate(st, fake_a, "AtoB"))
    cols = [np.concatenate([x, y]) for x, y in ((strip_a, strip_b), (fake_b, fake_a), (rec_a, rec_b))]
    path = i2i_common.strip_image(
      os.path.join(workdir, "samples", f"step_{step:07d}.png"), cols, scale=FLAGS.strip_scale
    )
    logging.info(
      "step %d: strip %s (cycle error of these: A %.4f, B %.4f)",
      step,
      path,
      float(np.mean(np.abs(rec_a - strip_a))),
      float(np.mean(np.abs(rec_b - strip_b))),
    )

  tconfig = trainer.TrainerConfig(
    workdir=workdir,
    num_steps=FLAGS.num_steps,
    log_every=FLAGS.log_every,
    checkpoint_every=FLAGS.checkpoint_every,
    sample_every=FLAGS.sample_every,
    keep_checkpoints=FLAGS.keep_checkpoints,
  )
  start = time.perf_counter()
  state = trainer.fit(
    name=NAME,
    state=state,
    train_step=train_step,
    data=data,
    config=tconfig,
    run_flags=cli.resolved_flags(),
    mesh=mesh,
    batch_axis=0,
    sample_hook=sample_hook,
  )
  wall = time.perf_counter() - start
  data.close()

  # ---------------------------------------------------------------- final evaluation
  a = i2i_common.to_float(uint8_arrays(test_a, FLAGS.num_eval))
  b = i2i_common.to_float(uint8_arrays(test_b, FLAGS.num_eval))

  def run(x, direction):
    return i2i_common.batched(lambda chunk: translate(state, chunk, direction), x, FLAGS.eval_batch)

  fake_b, fake_a = run(a, "AtoB"), run(b, "BtoA")
  rec_a, rec_b = run(fake_b, "BtoA"), run(fake_a, "AtoB")
  results = {
    "dataset": FLAGS.dataset,
    "step": int(state.step),
    "seed": FLAGS.seed,
    "eval_split": "test" if FLAGS.evaluate else "train",
    "num_eval_a": len(a),
    "num_eval_b": len(b),
    "cycle_error_a": float(np.mean(np.abs(rec_a - a))),
    "cycle_error_b": float(np.mean(np.abs(rec_b - b))),
    "wall_time_sec_this_process": wall,
  }
  results["cycle_error"] = 0.5 * (results["cycle_error_a"] + results["cycle_error_b"])
  if FLAGS.dataset == paired.DIGIT_EDGES and FLAGS.evaluate:
    # The digits test split is paired: how close is the unpaired-trained G to the true outlines?
    results["l1_g_vs_true_b"] = float(np.mean(np.abs(fake_b - b)))
    results["l1_f_vs_true_a"] = float(np.mean(np.abs(fake_a - a)))
    results["l1_identity"] = float(np.mean(np.abs(a - b)))
  with open(os.path.join(workdir, "eval_metrics.json"), "w") as f:
    json.dump(results, f, indent=2)
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
  cli.run(main)
