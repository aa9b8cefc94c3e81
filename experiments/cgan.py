r"""Conditional GANs (Mirza & Osindero, 2014) on labelled image datasets.

  python experiments/train_classifier.py --dataset=digits --workdir=/tmp/clf_digits
  python experiments/cgan.py --flagfile=experiments/flags/cgan_digits.flags --workdir=/tmp/cgan_digits \
      --classifier_workdir=/tmp/clf_digits

Trains a conditional generator G(z, y) against a conditional discriminator
D(x, y) (any pair from `jaxgan.models.cgan`, by registry name) on the train
split of --dataset; the discriminator sees real images with their labels and
fakes with the labels they were generated for, and the generator step draws
its labels uniformly (`jaxgan.steps`). Writes metrics.jsonl, checkpoints
(rerunning the same command resumes) and a per-class sample grid (one row per
class, one fixed z per column) every --sample_every iterations to
``samples/``. At the end -- or with --eval_only on an existing workdir -- it
generates --eval_per_class samples of every class, classifies them with the
classifier trained on real data (--classifier_workdir, from
experiments/train_classifier.py) and writes label_accuracy.json: the fraction
classified as the requested class, per-class accuracies, the confusion matrix,
class coverage and the Fréchet classifier distance to real train images.

With --eval_every=N the run is also evaluated every N iterations (FCD, KID,
precision/recall in the classifier's feature space and label accuracy, on
--eval_per_class samples per class; lines of eval.jsonl), and with
--best_metric (e.g. label_accuracy or fcd) the best state so far is kept in
checkpoints_best/ for `experiments/evaluate.py --step=best`.
"""

from __future__ import annotations

import os

import jax
import launch
import numpy as np
from absl import flags, logging

from jaxgan import checkpoint as checkpoint_lib
from jaxgan import evaluation, losses, recipes, runs, sampling, storage, trainer, viz
from jaxgan.data import images as images_lib
from jaxgan.errors import CheckpointError, ConfigError
from jaxgan.families import gan
from jaxgan.metrics import classifier as clf
from jaxgan.metrics import features as features_lib
from jaxgan.metrics import frechet
from jaxgan.models import cgan
from jaxgan.recipes import conditional

launch.define_common_flags(default_steps=10000, default_batch=64)
flags.DEFINE_string(
  "dataset",
  "digits",
  "Labelled dataset: digits (offline), mnist, fashion_mnist, cifar10, or "
  "any name jaxgan.data.images.make_source accepts.",
)
flags.DEFINE_string("data_dir", None, "TFDS data directory (never downloaded into).")
flags.DEFINE_enum("generator", "cgan_mlp", sorted(cgan.GENERATORS), "Conditional generator.")
flags.DEFINE_enum("discriminator", "cgan_mlp", sorted(cgan.DISCRIMINATORS), "Conditional discriminator.")
flags.DEFINE_list("g_hidden", None, "Hidden widths of an MLP generator (default: the model's).")
flags.DEFINE_list("d_hidden", None, "Hidden widths of an MLP discriminator (default: the model's).")
flags.DEFINE_integer(
  "g_width", None, "Base channels of a convolutional generator (default: the model's).", lower_bound=1
)
flags.DEFINE_integer(
  "d_width", None, "Base channels of a convolutional discriminator (default: the model's).", lower_bound=1
)
flags.DEFINE_float(
  "g_dropout", None, "Generator dropout rate (default: the model's).", lower_bound=0.0, upper_bound=0.99
)
flags.DEFINE_float(
  "d_dropout", None, "Discriminator dropout rate (default: the model's).", lower_bound=0.0, upper_bound=0.99
)
flags.DEFINE_enum("loss", "non_saturating", sorted(losses.LOSSES), "Adversarial loss.")
flags.DEFINE_integer("n_critic", 1, "Discriminator updates per generator update.", lower_bound=1)
flags.DEFINE_float("real_label", 1.0, "Target for real samples (0.9: one-sided label smoothing).")
flags.DEFINE_float("gp_weight", 0.0, "WGAN-GP lambda (0: off).", lower_bound=0.0)
flags.DEFINE_float("r1_weight", 0.0, "R1 penalty gamma (0: off).", lower_bound=0.0)
flags.DEFINE_enum("optimizer", "adam", ["adam", "rmsprop"], "Optimiser of both networks.")
flags.DEFINE_float("lr", 2e-4, "Learning rate of the generator (and of D unless --d_lr).", lower_bound=0.0)
flags.DEFINE_float("d_lr", None, "Discriminator learning rate (default: --lr).", lower_bound=0.0)
flags.DEFINE_float("b1", 0.5, "Adam beta1.")
flags.DEFINE_float("b2", 0.999, "Adam beta2.")
flags.DEFINE_enum(
  "lr_schedule",
  "constant",
  ["constant", "linear_decay"],
  "constant, or constant then linear decay to 0 (both networks).",
)
flags.DEFINE_float(
  "decay_start",
  0.5,
  "With linear_decay: fraction of the run after which the decay starts.",
  lower_bound=0.0,
  upper_bound=1.0,
)
flags.DEFINE_integer("latent_dim", 100, "Size of z.", lower_bound=1)
flags.DEFINE_enum("latent_dist", "normal", list(gan.LATENT_DISTRIBUTIONS), "Distribution of z.")
flags.DEFINE_float(
  "ema_decay",
  0.0,
  "Generator EMA decay (0: off); grids and label accuracy use the EMA.",
  lower_bound=0.0,
  upper_bound=0.999999,
)
flags.DEFINE_integer("grid_columns", 10, "Samples per class (fixed z per column) in the per-class grid.", lower_bound=1)
flags.DEFINE_string(
  "classifier_workdir", None, "Classifier trained on the real --dataset by experiments/train_classifier.py (required)."
)
flags.DEFINE_integer("eval_per_class", 100, "Samples per class for the final label accuracy.", lower_bound=1)
flags.DEFINE_bool("eval_only", False, "Only evaluate the newest checkpoint in --workdir (no training).")
launch.define_eval_flags(classifier=False)

FLAGS = flags.FLAGS
NAME = conditional.EXPERIMENT
RESULTS_FILE = "label_accuracy.json"


def check_classifier(source: images_lib.ImageSource) -> dict:
  """The classifier's info, after checking it was trained on this dataset (one clear error if not)."""
  workdir = FLAGS.classifier_workdir
  if not workdir:
    raise ConfigError(
      f"--classifier_workdir is not set: the label accuracy needs a classifier trained on "
      f"real {FLAGS.dataset}; train it with "
      f"`{clf.train_command(FLAGS.dataset, '/tmp/clf_' + FLAGS.dataset)}` and pass "
      f"--classifier_workdir=/tmp/clf_{FLAGS.dataset}"
    )
  return evaluation.check_classifier(workdir, FLAGS.dataset, source.images_shape, source.num_classes)


def _features(extractor, images: np.ndarray) -> np.ndarray:
  return features_lib.extract_features(extractor, [images], len(images), batch_size=500)


def evaluate(
  state, sampling_st, config: gan.Config, features: clf.ClassifierFeatures, workdir: str, seed_key: jax.Array
) -> dict:
  """Label accuracy, class coverage, intra-class diversity and Fréchet classifier distance.

  ``state`` is sampled with its raw generator parameters, ``sampling`` (see
  `conditional.sampling_state`) with the EMA ones when kept.
  """
  classifier_info = features.info
  real_x, real_y = clf.dataset_arrays(FLAGS.dataset, "train", FLAGS.data_dir)
  real_x, real_y = real_x[:10000], real_y[:10000]
  real_feats = _features(features, real_x)
  results = {
    "dataset": FLAGS.dataset,
    "step": int(state.step),
    "seed": FLAGS.seed,
    "generator": FLAGS.generator,
    "discriminator": FLAGS.discriminator,
    "samples_per_class": FLAGS.eval_per_class,
    "classifier": {k: classifier_info.get(k) for k in ("arch", "dataset", "test_accuracy", "params_digest")}
    | {"workdir": os.path.abspath(FLAGS.classifier_workdir)},
    "fcd_real_samples": len(real_x),
    "intra_class_diversity_real": clf.intra_class_diversity(real_feats, real_y, config.num_classes),
  }
  try:
    test_x, _ = clf.dataset_arrays(FLAGS.dataset, "test", FLAGS.data_dir)
    # Reference: the same distance between two real samples (test vs train images).
    results["fcd_real_test_reference"] = frechet.fid_from_features(real_feats, _features(features, test_x))
    results["fcd_real_test_samples"] = len(test_x)
  except images_lib.DataError:
    pass
  sample_key = jax.random.fold_in(seed_key, 0xC1A5)
  for label, use_ema in (("generator_params", False), ("ema_params", True)):
    if use_ema and state.ema_params is None:
      continue
    images, labels = sampling.sample_per_class(
      sampling_st if use_ema else state, config, sample_key, FLAGS.eval_per_class, use_ema=use_ema
    )
    acc = clf.label_accuracy(features.logits_fn, images, labels, config.num_classes)
    pred = clf.predict(features.logits_fn, images)
    acc["coverage"] = clf.class_coverage(pred, config.num_classes)
    fake_feats = _features(features, images)
    acc["fcd"] = frechet.fid_from_features(real_feats, fake_feats)
    acc["intra_class_diversity"] = clf.intra_class_diversity(fake_feats, labels, config.num_classes)
    results[label] = acc
  results["reported"] = "ema_params" if "ema_params" in results else "generator_params"
  results["accuracy"] = results[results["reported"]]["accuracy"]
  storage.dump_json(os.path.join(workdir, RESULTS_FILE), results)
  return results


def main(argv):
  del argv
  setup = recipes.setup(launch.resolved_flags(), experiment=NAME)
  config, source = setup.config, setup.info["source"]
  num_classes, image_shape = setup.info["num_classes"], setup.info["image_shape"]
  classifier_info = check_classifier(source)
  eval_fn, best_metric, best_mode = evaluation.training_eval(
    setup,
    eval_every=0 if FLAGS.eval_only else FLAGS.eval_every,
    best_metric=None if FLAGS.eval_only else FLAGS.best_metric,
    classifier_workdir=FLAGS.classifier_workdir,
    num_samples=FLAGS.eval_per_class * num_classes,
  )
  workdir = os.path.abspath(FLAGS.workdir)
  seed_key = jax.random.fold_in(jax.random.PRNGKey(FLAGS.seed), 0xC6A9)
  grid_key = jax.random.fold_in(seed_key, 1)
  scale = max(1, 64 // image_shape[0])
  features = clf.ClassifierFeatures(FLAGS.classifier_workdir, FLAGS.dataset)
  quick_key = jax.random.fold_in(seed_key, 2)
  stats_key = jax.random.fold_in(seed_key, 3)

  def write_grid(st, path, step):
    images = conditional.class_grid(st, config, grid_key, columns=FLAGS.grid_columns)
    title, ema = f"{NAME} {FLAGS.dataset}", st.ema_params is not None
    labels = setup.info["class_labels"]
    return conditional.class_grid_figure(path, images, labels, scale=scale, title=title, step=step, ema=ema)

  def sample_hook(st, step):
    st = conditional.sampling_state(st, config, stats_key)
    path = write_grid(st, os.path.join(workdir, "samples", f"class_grid_{step:07d}.png"), step)
    images, labels = sampling.sample_per_class(st, config, quick_key, FLAGS.eval_per_class)
    acc = clf.label_accuracy(features.logits_fn, images, labels, num_classes)["accuracy"]
    logging.info("step %d: label accuracy %.2f%% (%d samples)", step, 100 * acc, len(labels))
    return [path]

  if FLAGS.eval_only:
    directory = os.path.join(workdir, trainer.CHECKPOINT_DIR)
    if not checkpoint_lib.finished_steps(directory):
      raise CheckpointError(
        f"--eval_only: no checkpoint in {directory}: train first (the same command without --eval_only)"
      )
    state, wall = runs.restore(setup, workdir, "latest").state, 0.0
  else:
    state, wall = launch.train(
      setup, sample_hook=sample_hook, eval_fn=eval_fn, best_metric=best_metric, best_mode=best_mode
    )

  # ---------------------------------------------------------------- final evaluation
  sampling_st = conditional.sampling_state(state, config, stats_key)
  write_grid(sampling_st, os.path.join(workdir, "class_grid.png"), int(state.step))
  results = evaluate(state, sampling_st, config, features, workdir, seed_key)
  if not FLAGS.eval_only:
    viz.loss_curves(
      os.path.join(workdir, trainer.METRICS_FILE),
      os.path.join(workdir, "loss_curves.png"),
      keys=("d_loss", "g_loss"),
      title=f"{NAME} {FLAGS.dataset}",
    )
  reported = results[results["reported"]]
  print(
    f"{FLAGS.dataset} step {results['step']}: label accuracy {100 * reported['accuracy']:.1f}% of "
    f"{reported['num_samples']} samples ({results['reported'].replace('_', ' ')}), classes covered "
    f"{reported['coverage']['classes_covered']}/{num_classes}, FCD {reported['fcd']:.2f}, intra-class "
    f"diversity {reported['intra_class_diversity']:.2f} (real {results['intra_class_diversity_real']:.2f}); "
    f"classifier test "
    f"accuracy {100 * classifier_info['test_accuracy']:.1f}% ({wall:.0f} s in this process)"
  )


if __name__ == "__main__":
  launch.run(main)
