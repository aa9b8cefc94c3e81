r"""Trains the domain classifier used to evaluate generated images.

  python experiments/train_classifier.py --dataset=digits --workdir=/tmp/clf_digits

Trains the dataset's classifier (`jaxgan.metrics.classifier`: a small CNN for
the 8x8 digits, a LeNet for MNIST / Fashion-MNIST, a small VGG for CIFAR-10) on
the real train split (digits: the first 1500 images), reports its accuracy on
the test split (digits: the last 297), and writes to --workdir the parameters
(orbax, ``params/``) and ``classifier.json`` (architecture, dataset,
hyper-parameters, accuracies, parameter digest). The result is a pure function
of the flags: the same --seed gives the same parameters.

It then serves as a feature extractor for the Fréchet classifier distance
(`ClassifierFeatures`), for label accuracy of conditional samples and for mode
counting; see experiments/cgan.py --classifier_workdir.
"""

from __future__ import annotations

import dataclasses
import os

import launch
from absl import flags, logging

from jaxgan.errors import ConfigError
from jaxgan.metrics import classifier as clf

# Per-dataset training defaults; every one can be overridden by its flag.
DEFAULTS = {
  "digits": dict(epochs=30, batch_size=64, lr=2e-3, max_shift=1),
  "mnist": dict(epochs=5, batch_size=128, lr=1e-3, max_shift=2),
  "fashion_mnist": dict(epochs=10, batch_size=128, lr=1e-3, max_shift=2),
  "cifar10": dict(epochs=30, batch_size=128, lr=1e-3, max_shift=4),
}
FALLBACK = dict(epochs=10, batch_size=128, lr=1e-3, max_shift=2)

flags.DEFINE_string("workdir", None, "Directory for the classifier's parameters and classifier.json.", required=True)
flags.DEFINE_string(
  "dataset",
  "digits",
  "Labelled image dataset (digits, mnist, fashion_mnist, cifar10, or any name jaxgan.data.images.make_source accepts).",
)
flags.DEFINE_string("data_dir", None, "TFDS data directory (never downloaded into).")
flags.DEFINE_string("train_split", "train", "Split to train on.")
flags.DEFINE_string("test_split", "test", "Split to report accuracy on.")
flags.DEFINE_enum("arch", None, sorted(clf.ARCHITECTURES), "Architecture (default: by dataset / image size).")
flags.DEFINE_integer("seed", 0, "Initialisation, shuffling, augmentation and dropout.")
flags.DEFINE_integer("epochs", None, "Passes over the train split (default: per dataset).", lower_bound=1)
flags.DEFINE_integer("batch_size", None, "Batch size (default: per dataset).", lower_bound=1)
flags.DEFINE_float("lr", None, "Peak Adam learning rate, cosine-decayed to 0 (default: per dataset).", lower_bound=0.0)
flags.DEFINE_float("weight_decay", 1e-4, "AdamW weight decay.", lower_bound=0.0)
flags.DEFINE_integer(
  "max_shift", None, "Random translation augmentation in pixels (default: per dataset).", lower_bound=0
)
flags.DEFINE_integer(
  "image_size",
  0,
  "Resize the images to this side (centre crop, bilinear; as a GAN run's --image_size --convert_data) to score "
  "runs on resized data, e.g. the digits at 32 px (0: the data's size).",
  lower_bound=0,
)
flags.DEFINE_bool("overwrite", False, "Replace a classifier already in --workdir.")

FLAGS = flags.FLAGS


def main(argv):
  del argv
  workdir = os.path.abspath(FLAGS.workdir)
  if os.path.exists(os.path.join(workdir, clf.INFO_FILE)) and not FLAGS.overwrite:
    raise ConfigError(
      f"{workdir} already holds a trained classifier ({clf.INFO_FILE}): "
      "pass --overwrite to retrain it, or choose another --workdir"
    )
  defaults = DEFAULTS.get(FLAGS.dataset, FALLBACK)

  def pick(name):
    value = getattr(FLAGS, name)
    return defaults[name] if value is None else value

  config = clf.TrainConfig(
    epochs=pick("epochs"),
    batch_size=pick("batch_size"),
    lr=pick("lr"),
    weight_decay=FLAGS.weight_decay,
    max_shift=pick("max_shift"),
    seed=FLAGS.seed,
  )
  size = FLAGS.image_size or None
  train_x, train_y = clf.dataset_arrays(FLAGS.dataset, FLAGS.train_split, FLAGS.data_dir, image_size=size)
  test_x, test_y = clf.dataset_arrays(FLAGS.dataset, FLAGS.test_split, FLAGS.data_dir, image_size=size)
  num_classes = int(max(train_y.max(), test_y.max())) + 1
  image_shape = tuple(int(s) for s in train_x.shape[1:])
  # A resized dataset gets the architecture of its new size, not the one of its name.
  arch = FLAGS.arch or clf.architecture_for("" if size else FLAGS.dataset, image_shape)
  module = clf.ARCHITECTURES[arch](num_classes=num_classes)
  logging.info(
    "training %s on %s %s (%d examples, %s), %s",
    arch,
    FLAGS.dataset,
    FLAGS.train_split,
    len(train_x),
    image_shape,
    config,
  )

  params, stats = clf.train_classifier(module, train_x, train_y, config, log=lambda s: logging.info("%s", s))
  logits_fn, _ = clf.make_apply_fns(module, params)
  test = clf.label_accuracy(logits_fn, test_x, test_y, num_classes)
  arch_config = {k: getattr(module, k) for k in ("width", "features", "dropout")}
  info = {
    "arch": arch,
    "arch_config": arch_config,
    "dataset": FLAGS.dataset,
    "data_dir": FLAGS.data_dir,
    "image_shape": list(image_shape),
    "num_classes": num_classes,
    "input_range": [-1.0, 1.0],
    "train_split": FLAGS.train_split,
    "test_split": FLAGS.test_split,
    "train_examples": len(train_x),
    "test_examples": len(test_x),
    "train_config": dataclasses.asdict(config),
    "test_accuracy": test["accuracy"],
    "test_per_class_accuracy": test["per_class_accuracy"],
    **stats,
    "command": clf.train_command(FLAGS.dataset, FLAGS.workdir, size),
  }
  info = clf.save_classifier(workdir, params, info)
  print(
    f"{arch} on {FLAGS.dataset}: test accuracy {100 * test['accuracy']:.2f}% "
    f"({len(test_x)} {FLAGS.test_split} images), train accuracy {100 * stats['train_accuracy']:.2f}%, "
    f"{stats['steps']} steps in {stats['train_seconds']:.1f} s; saved to {workdir}"
  )


if __name__ == "__main__":
  launch.run(main)
