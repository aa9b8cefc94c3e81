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
from jaxgan.models.pix2pix import NORMS, PatchGANDiscriminator, UNetGenerator

cli.define_common_flags(default_steps=200000, default_batch=1)
i2i_common.define_i2i_flags(
  num_strip=8, flip_help="Random left-right mirroring (same for input and target).", eval_what="pairs"
)
flags.DEFINE_string(
  "dataset",
  paired.DIGIT_EDGES,
  f"'{paired.DIGIT_EDGES}' (offline), a folder of side-by-side A|B images (with train/val "
  "subfolders or not), or an .npz with uint8 arrays 'a' and 'b'.",
)
flags.DEFINE_string("train_split", "train", "Training split (digits_edges: train; folder: a subfolder).")
flags.DEFINE_string("eval_split", "test", "Held-out split for the strips and the final L1 ('' for none).")
flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"], "AtoB: A (left half) is the input; BtoA the reverse.")
flags.DEFINE_integer("image_size", 256, "Image side (power of two; the U-Net depth is log2 of it).", lower_bound=4)
flags.DEFINE_integer("channels", 0, "Channels for image folders (0: native).", lower_bound=0, upper_bound=3)
flags.DEFINE_integer("base_features", 64, "U-Net channels of the first encoder block.", lower_bound=1)
flags.DEFINE_integer("max_features", 512, "U-Net channel cap.", lower_bound=1)
flags.DEFINE_enum("g_norm", "batch", list(NORMS), "U-Net normalisation.")
flags.DEFINE_bool("innermost_norm", True, "Normalise the 1x1 bottleneck (set false for batch size 1).")
flags.DEFINE_float("dropout_rate", 0.5, "Decoder dropout on the first three blocks.", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_bool("skip_connections", True, "U-Net (true) or the paper's plain encoder-decoder (false).")
flags.DEFINE_enum("loss", "non_saturating", sorted(losses.LOSSES), "Adversarial loss (the paper: BCE).")
flags.DEFINE_float("l1_weight", 100.0, "lambda of the L1 term.", lower_bound=0.0)
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


def build_state(shape_a, channels_b, num_steps):
  lr = image2image.constant_then_linear_decay(FLAGS.lr, max(num_steps - FLAGS.decay_steps, 0), FLAGS.decay_steps)
  tx = optax.adam(lr, b1=FLAGS.b1, b2=FLAGS.b2)
  generator = UNetGenerator(
    channels=channels_b,
    base_features=FLAGS.base_features,
    max_features=FLAGS.max_features,
    norm=FLAGS.g_norm,
    innermost_norm=FLAGS.innermost_norm,
    dropout_rate=FLAGS.dropout_rate,
    skip_connections=FLAGS.skip_connections,
  )
  try:
    generator.depth(shape_a[0], shape_a[1])  # a clear error for unusable sizes, before any compile
  except ValueError as e:
    raise ConfigError(f"--image_size={shape_a[0]}: {e}") from None
  discriminator = PatchGANDiscriminator(patch_size=int(FLAGS.patch_size), base_features=FLAGS.d_base_features)
  return image2image.create_pix2pix_state(
    seed=FLAGS.seed,
    generator=generator,
    discriminator=discriminator,
    g_tx=tx,
    d_tx=tx,
    input_shape=shape_a,
    target_channels=channels_b,
  )


def open_source(split):
  try:
    return paired.make_paired_source(FLAGS.dataset, split, FLAGS.image_size, FLAGS.channels or None, FLAGS.direction)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def translate_fn(inference):
  fn = jax.jit(image2image.pix2pix_translate, static_argnames="train")
  key = jax.random.fold_in(jax.random.PRNGKey(FLAGS.seed), 0xE7A1)
  return lambda state, x: fn(state, x, train=inference == "paper", key=key)


def translate_mode():
  if not FLAGS.input_dir:
    raise ConfigError("--input_dir is required with --mode=translate")
  i2i_common.require_checkpoint(FLAGS.workdir)
  source = open_source(FLAGS.train_split)
  names, images = paired.load_image_files(FLAGS.input_dir, source.shape_a[0], source.shape_a[-1], FLAGS.translate_side)
  i2i_common.check_outputs(FLAGS.output_dir, names)
  state = build_state(source.shape_a, source.shape_b[-1], FLAGS.num_steps)
  state = i2i_common.restore_for_inference(FLAGS.workdir, NAME, state)
  run = translate_fn(FLAGS.inference)
  out = i2i_common.batched(lambda x: run(state, x), i2i_common.to_float(images), FLAGS.eval_batch)
  paths = i2i_common.write_translations(FLAGS.output_dir, names, out)
  print(
    f"translated {len(paths)} images with the step-{int(state.step)} generator "
    f"({FLAGS.inference} mode) into {os.path.abspath(FLAGS.output_dir)}"
  )


def main(argv):
  del argv
  if FLAGS.mode == "translate":
    return translate_mode()
  source = open_source(FLAGS.train_split)
  held_out = open_source(FLAGS.eval_split) if FLAGS.eval_split else None
  mesh = parallel.make_data_mesh(FLAGS.num_devices)
  parallel.check_batch_divisible(FLAGS.batch_size, mesh)
  jitter_size = (FLAGS.jitter_size or image2image.default_jitter_size(source.shape_a[0])) if FLAGS.jitter else 0
  config = image2image.Pix2PixConfig(
    loss=FLAGS.loss,
    l1_weight=FLAGS.l1_weight,
    jitter_size=jitter_size,
    jitter_method=FLAGS.jitter_method,
    flip=FLAGS.flip,
    skip_nonfinite=FLAGS.skip_nonfinite,
  )
  state = build_state(source.shape_a, source.shape_b[-1], FLAGS.num_steps)
  train_step = image2image.make_pix2pix_train_step(
    config, state_sharding=parallel.replicated(mesh), batch_sharding=parallel.batch_sharded(mesh)
  )
  data = paired.PairedIterator(source, FLAGS.batch_size, FLAGS.seed)
  workdir = os.path.abspath(FLAGS.workdir)
  strip_source = held_out if held_out is not None else source
  strip_a, strip_b = (i2i_common.to_float(x) for x in strip_source.arrays())
  strip_a, strip_b = strip_a[: FLAGS.num_strip], strip_b[: FLAGS.num_strip]
  run_eval = translate_fn("eval")

  def sample_hook(st, step):
    out = np.asarray(run_eval(st, strip_a))
    path = i2i_common.strip_image(
      os.path.join(workdir, "samples", f"step_{step:07d}.png"), [strip_a, out, strip_b], scale=FLAGS.strip_scale
    )
    logging.info(
      "step %d: strip %s (held-out L1 of these %d: %.4f)", step, path, len(out), float(np.mean(np.abs(out - strip_b)))
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
  results = {
    "dataset": FLAGS.dataset,
    "direction": FLAGS.direction,
    "step": int(state.step),
    "seed": FLAGS.seed,
    "wall_time_sec_this_process": wall,
  }
  if held_out is not None:
    a, b = (i2i_common.to_float(x[: FLAGS.num_eval]) for x in held_out.arrays())
    results.update(eval_split=FLAGS.eval_split, num_eval=len(a))
    for mode in ("eval", "paper"):
      run = translate_fn(mode)
      out = i2i_common.batched(lambda x, run=run: run(state, x), a, FLAGS.eval_batch)
      results[f"l1_model_{mode}"] = float(np.mean(np.abs(out - b)))
    results["l1_identity"] = float(np.mean(np.abs(a - b))) if a.shape == b.shape else None
  with open(os.path.join(workdir, "eval_metrics.json"), "w") as f:
    json.dump(results, f, indent=2)
  viz.loss_curves(
    os.path.join(workdir, trainer.METRICS_FILE),
    os.path.join(workdir, "loss_curves.png"),
    keys=("d_loss", "g_adv_loss", "g_l1"),
    title=f"{NAME} {FLAGS.dataset}",
  )
  if held_out is None:
    print(f"{NAME} step {results['step']}: no held-out split ({wall:.0f} s in this process)")
    return
  identity = results["l1_identity"]
  print(
    f"{NAME} {FLAGS.dataset} step {results['step']}: held-out L1 (mean |G(x) - y| on [-1, 1], "
    f"{results['num_eval']} pairs) model {results['l1_model_eval']:.4f} (eval mode), "
    f"{results['l1_model_paper']:.4f} (paper mode: dropout + batch statistics); identity map "
    f"{'n/a' if identity is None else f'{identity:.4f}'} ({wall:.0f} s in this process)"
  )


if __name__ == "__main__":
  cli.run(main)
