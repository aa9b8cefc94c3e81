r"""Evaluates a trained run: every score beside its real-vs-real floor (a Mimicry-style table).

  python experiments/train_classifier.py --dataset=digits --workdir=/tmp/clf_digits
  python experiments/evaluate.py --workdir=/tmp/dcgan_digits --classifier_workdir=/tmp/clf_digits

Restores a run of experiments/gan.py, dcgan.py, cgan.py (images) or wgan.py
(2-D mixtures) -- its latest checkpoint, the best one kept by --best_metric
(--step=best) or a numbered step -- draws --eval_samples samples from its sampling
generator (EMA parameters when kept) and scores them against --num_real real
training images: Fréchet classifier distance, KID (mean ± std over subsets)
and k-NN precision/recall/density/coverage in the classifier's feature space
(on pixels, ``pixel_*``, without --classifier_workdir), label accuracy for
cGAN runs, the Stacked-MNIST mode count for ``stacked_*`` datasets, Inception
FID / IS with --inception_weights; mode metrics for 2-D runs. Beside each
number: the same metric for real held-out images (the test split) in place
of the samples, with the same n_real / n_fake. See `jaxgan.evaluation`.

Writes ``<workdir>/eval/results_step<step>.json`` and ``.md`` and prints the
table.
"""

from __future__ import annotations

import launch
from absl import flags

from jaxgan import evaluation

flags.DEFINE_string("workdir", None, "The run to evaluate (the --workdir it was trained with).", required=True)
flags.DEFINE_string(
  "classifier_workdir",
  None,
  "Classifier of experiments/train_classifier.py trained on the run's "
  "dataset (for stacked_<base> datasets: on <base>); without it classifier metrics are skipped "
  "and FCD/KID/precision/recall are computed on pixels.",
)
flags.DEFINE_string(
  "inception_weights",
  None,
  "FID InceptionV3 weights (.npz; no pickles) for fid and is (default: $JAXGAN_INCEPTION_WEIGHTS; nothing is "
  "downloaded).",
)
flags.DEFINE_list(
  "metrics",
  [],
  f"Metric groups, any of {','.join(evaluation.METRICS)} (empty: every one that "
  "applies to the run and has what it needs).",
)
flags.DEFINE_integer(
  "eval_samples",
  None,
  "Generated samples (default 10,000 images, capped by the held-out split the floor uses; 2,500 points for 2-D runs).",
  lower_bound=4,
)
flags.DEFINE_integer("num_real", None, "Real training images (default 10,000, capped by the data).", lower_bound=4)
flags.DEFINE_string("step", "latest", "Checkpoint: latest, best (checkpoints_best/, from --best_metric) or a step.")
flags.DEFINE_integer("seed", 0, "Seed of the evaluation: real subset, z, labels, KID subsets.")

FLAGS = flags.FLAGS


def main(argv):
  del argv
  result = evaluation.evaluate_run(
    FLAGS.workdir,
    step=FLAGS.step,
    metrics=FLAGS.metrics,
    classifier_workdir=FLAGS.classifier_workdir,
    inception_weights=FLAGS.inception_weights,
    num_real=FLAGS.num_real,
    num_fake=FLAGS.eval_samples,
    seed=FLAGS.seed,
  )
  json_path, md_path = evaluation.write_results(result)
  print(evaluation.results_markdown(result["records"], result["header"]), end="")
  print(f"written to {json_path} and {md_path}")


if __name__ == "__main__":
  launch.run(main)
