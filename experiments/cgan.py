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

import flag_groups
import jax
import launch
import numpy as np
from absl import flags, logging

from jaxgan import checkpoint as checkpoint_lib
from jaxgan import evaluation, recipes, runs, sampling, trainer, viz
from jaxgan.data import images as images_lib
from jaxgan.errors import CheckpointError
from jaxgan.families import gan
from jaxgan.metrics import classifier as clf
from jaxgan.metrics import features as features_lib
from jaxgan.metrics import frechet
from jaxgan.recipes import conditional
from jaxgan.recipes import images as image_recipe

launch.define_common_flags(default_steps=10000, default_batch=64)
flag_groups.image_data()
flag_groups.model_size(
  conditional.GENERATORS,
  conditional.DISCRIMINATORS,
  "cgan_mlp",
  "cgan_mlp",
  widths_help="(empty: the model's; an MLP's hidden widths, one number for a convolutional model's base channel "
  "count, three for cgan_paper (z, label, joint layer) and cgan_maxout (image, label, joint maxout units); sngan: "
  "conditional BatchNorm G, projection D, sngan_ac: AC-GAN head for --loss=acgan)",
)
flags.DEFINE_float(
  "g_dropout", None, "Generator dropout rate (default: the model's).", lower_bound=0.0, upper_bound=0.99
)
flags.DEFINE_float(
  "d_dropout", None, "Discriminator dropout rate (default: the model's).", lower_bound=0.0, upper_bound=0.99
)
flag_groups.optimizer(lr=2e-4, b1=0.5, b2=0.999)
flag_groups.adversarial(loss="non_saturating", n_critic=1, classes=True)
flag_groups.discriminator_options()
flag_groups.latent(latent_dim=100)
flag_groups.evaluation(
  eval_samples=1000,
  grid_size=10,
  what="samples (split evenly over the classes) of the label accuracy and the periodic evaluation",
  grid_help="Samples per class (fixed z per column) in the per-class grid.",
)
flags.DEFINE_bool("eval_only", False, "Only evaluate the newest checkpoint in --workdir (no training).")

FLAGS = flags.FLAGS
NAME = conditional.EXPERIMENT
RESULTS_FILE = "label_accuracy.json"
SAMPLE_TAG = 0xC1A5  # fold_in tags under the run's evaluation key: class-grid z, evaluation samples, statistics
GRID_TAG, STATS_TAG = 1, 3


def classifier_hint(dataset: str) -> str:
  """How to get the label accuracy of a run without a classifier."""
  return (
    f"train a classifier with `{clf.train_command(dataset, '/tmp/clf_' + dataset)}` and rerun with "
    f"--classifier_workdir=/tmp/clf_{dataset} (add --eval_only to evaluate the finished run without training)"
  )


def _features(extractor, images: np.ndarray) -> np.ndarray:
  return features_lib.extract_features(extractor, [images], len(images), batch_size=500)


class ClassSamples:
  """The one sampling path of the sample hook and the final evaluation.

  `sampling_state` (EMA parameters with standing BatchNorm statistics) and
  the same ``--eval_samples`` samples (split evenly over the classes, z from
  one key fixed by --seed, never a training key) at every call: the hook's
  label accuracy at step N is the final evaluation's at step N.
  """

  def __init__(self, config: gan.Config, seed: int, total: int):
    self.config = config
    self.key = jax.random.fold_in(jax.random.PRNGKey(seed), 0xC6A9)
    self.per_class = max(1, total // config.num_classes)

  def state(self, state):
    return conditional.sampling_state(state, self.config, jax.random.fold_in(self.key, STATS_TAG))

  def grid(self, sampling_st, columns: int) -> np.ndarray:
    return conditional.class_grid(sampling_st, self.config, jax.random.fold_in(self.key, GRID_TAG), columns=columns)

  def images(self, sampling_st, use_ema: bool = True) -> tuple[np.ndarray, np.ndarray]:
    key = jax.random.fold_in(self.key, SAMPLE_TAG)
    return sampling.sample_per_class(sampling_st, self.config, key, self.per_class, use_ema=use_ema)


def evaluate(state, samples: ClassSamples, features: clf.ClassifierFeatures | None, workdir: str, source) -> dict:
  """Label accuracy, class coverage, intra-class diversity and Fréchet classifier distance (with a classifier),
  for the raw and the EMA generator; without one, the pixel-space numbers and a note on the label accuracy."""
  config = samples.config
  sampling_st = samples.state(state)
  results = {
    "dataset": FLAGS.dataset,
    "step": int(state.step),
    "seed": FLAGS.seed,
    "generator": FLAGS.generator,
    "discriminator": FLAGS.discriminator,
    "samples_per_class": samples.per_class,
  }
  generators = [("generator_params", False)] + ([("ema_params", True)] if state.ema_params is not None else [])
  results["reported"] = generators[-1][0]
  if features is None:
    results["accuracy"] = None
    results["label_accuracy"] = f"unavailable without --classifier_workdir: {classifier_hint(FLAGS.dataset)}"
    for label, use_ema in generators:
      images, _ = samples.images(sampling_st if use_ema else state, use_ema=use_ema)
      real, _ = image_recipe.reference_images(source, len(images), FLAGS.seed)
      results[label] = {
        "num_samples": len(images),
        "pixel_frechet_distance": frechet.fid_from_features(
          real.reshape(len(real), -1), images.reshape(len(images), -1)
        ),
        "pixel_value_w1": viz.pixel_value_w1(real, images),
      }
    launch.write_results(launch.resolved_flags(), os.path.join(workdir, RESULTS_FILE), results)
    return results
  classifier_info = features.info
  real_x, real_y = clf.dataset_arrays(FLAGS.dataset, "train", FLAGS.data_dir)
  real_x, real_y = real_x[:10000], real_y[:10000]
  real_feats = _features(features, real_x)
  results.update(
    classifier={k: classifier_info.get(k) for k in ("arch", "dataset", "test_accuracy", "params_digest")}
    | {"workdir": os.path.abspath(FLAGS.classifier_workdir)},
    fcd_real_samples=len(real_x),
    intra_class_diversity_real=clf.intra_class_diversity(real_feats, real_y, config.num_classes),
  )
  try:
    test_x, _ = clf.dataset_arrays(FLAGS.dataset, "test", FLAGS.data_dir)
    # Reference: the same distance between two real samples (test vs train images).
    results["fcd_real_test_reference"] = frechet.fid_from_features(real_feats, _features(features, test_x))
    results["fcd_real_test_samples"] = len(test_x)
  except images_lib.DataError:
    pass
  for label, use_ema in generators:
    images, labels = samples.images(sampling_st if use_ema else state, use_ema=use_ema)
    acc = clf.label_accuracy(features.logits_fn, images, labels, config.num_classes)
    pred = clf.predict(features.logits_fn, images)
    acc["coverage"] = clf.class_coverage(pred, config.num_classes)
    fake_feats = _features(features, images)
    acc["fcd"] = frechet.fid_from_features(real_feats, fake_feats)
    acc["intra_class_diversity"] = clf.intra_class_diversity(fake_feats, labels, config.num_classes)
    results[label] = acc
  results["accuracy"] = results[results["reported"]]["accuracy"]
  launch.write_results(launch.resolved_flags(), os.path.join(workdir, RESULTS_FILE), results)
  return results


def main(argv):
  del argv
  setup = recipes.setup(launch.resolved_flags(), experiment=NAME)
  config, source = setup.config, setup.info["source"]
  num_classes, image_shape = setup.info["num_classes"], setup.info["image_shape"]
  features = None
  if FLAGS.classifier_workdir:
    evaluation.check_classifier(FLAGS.classifier_workdir, FLAGS.dataset, source.images_shape, source.num_classes)
    features = clf.ClassifierFeatures(FLAGS.classifier_workdir, FLAGS.dataset)
  else:
    logging.info("no --classifier_workdir: label accuracy unavailable; %s", classifier_hint(FLAGS.dataset))
  eval_fn, best_metric, best_mode = evaluation.training_eval(
    setup,
    eval_every=0 if FLAGS.eval_only else FLAGS.eval_every,
    best_metric=None if FLAGS.eval_only else FLAGS.best_metric,
    classifier_workdir=FLAGS.classifier_workdir,
    num_samples=FLAGS.eval_samples,
  )
  workdir = os.path.abspath(FLAGS.workdir)
  samples = ClassSamples(config, FLAGS.seed, FLAGS.eval_samples)
  scale = max(1, 64 // image_shape[0])
  reported_ema = True  # the hook reports what the final evaluation reports: the EMA generator when kept

  def write_grid(sampling_st, path, step):
    images = samples.grid(sampling_st, FLAGS.grid_size)
    title, ema = f"{NAME} {FLAGS.dataset}", sampling_st.ema_params is not None
    labels = setup.info["class_labels"]
    return conditional.class_grid_figure(path, images, labels, scale=scale, title=title, step=step, ema=ema)

  def sample_hook(st, step):
    sampling_st = samples.state(st)
    path = write_grid(sampling_st, os.path.join(workdir, "samples", f"class_grid_{step:07d}.png"), step)
    if features is not None:
      images, labels = samples.images(sampling_st, use_ema=reported_ema)
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
  write_grid(samples.state(state), os.path.join(workdir, "class_grid.png"), int(state.step))
  results = evaluate(state, samples, features, workdir, source)
  if not FLAGS.eval_only:
    viz.loss_curves(
      os.path.join(workdir, trainer.METRICS_FILE),
      os.path.join(workdir, "loss_curves.png"),
      keys=("d_loss", "g_loss"),
      title=f"{NAME} {FLAGS.dataset}",
    )
  reported = results[results["reported"]]
  which = results["reported"].replace("_", " ")
  if features is None:
    print(
      f"{FLAGS.dataset} step {results['step']}: pixel FD {reported['pixel_frechet_distance']:.2f} of "
      f"{reported['num_samples']} samples ({which}); label accuracy unavailable: "
      f"{classifier_hint(FLAGS.dataset)} ({wall:.0f} s in this process)"
    )
    return
  print(
    f"{FLAGS.dataset} step {results['step']}: label accuracy {100 * reported['accuracy']:.1f}% of "
    f"{reported['num_samples']} samples ({which}), classes covered "
    f"{reported['coverage']['classes_covered']}/{num_classes}, FCD {reported['fcd']:.2f}, intra-class "
    f"diversity {reported['intra_class_diversity']:.2f} (real {results['intra_class_diversity_real']:.2f}); "
    f"classifier test "
    f"accuracy {100 * features.info['test_accuracy']:.1f}% ({wall:.0f} s in this process)"
  )


if __name__ == "__main__":
  launch.run(main)
