r"""Evaluating a run as Mimicry reports GANs: every score beside its real-vs-real floor.

`evaluate_run` restores a run (rebuilt by its recipe, `jaxgan.recipes`: the
latest, the best or a numbered checkpoint), draws ``n_fake`` samples from its sampling generator (the
EMA parameters when kept, with BatchNorm statistics re-measured for them) and
scores them against ``n_real`` real training images; `results_markdown` gives
the table ``metric | value | real-vs-real floor | n_real | n_fake | step``.

The floor. Every score is also computed with the samples replaced by
``n_fake`` *real held-out* images (the dataset's test split, e.g. the last 297
vendored digits; a disjoint part of the training images when there is no
other split), against the same ``n_real`` training images, features and
subsets. It is what a perfect generator would get with these sample sizes:
the estimators are biased in n (the Fréchet distance of two samples of one
distribution is > 0), so a model score means something only next to it.

Image runs (experiments/gan.py, dcgan.py, cgan.py), with phi the penultimate
layer of the dataset's classifier (`jaxgan.metrics.classifier`, trained by
experiments/train_classifier.py):

* ``fcd`` -- Fréchet classifier distance, the FID formula in phi's space:
  ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2}) for the Gaussians fitted
  to phi(real) and phi(samples) (`jaxgan.metrics.frechet`);
* ``kid`` -- the unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3 on
  phi, mean ± std over 100 subsets of min(1000, n) (`jaxgan.metrics.kid`);
* ``precision``, ``recall``, ``density``, ``coverage`` -- k-NN manifolds
  (k = 3) of phi(real) and phi(samples) (`jaxgan.metrics.prdc`);
* ``confident_fraction`` -- (1/N) sum_i 1[max_k softmax(f(x_i))_k > 0.9]: how
  many samples the classifier f assigns to one class with confidence, the
  per-sample half of the Inception Score's motivation (Salimans et al., 2016);
  floor: the same share for the held-out real images;
* ``label_accuracy`` (cGAN runs) -- (1/N) sum_i 1[argmax f(G(z_i, y_i)) = y_i];
  floor: the classifier's accuracy on the held-out images;
* ``stacked_modes``, ``stacked_kl_to_uniform`` (``stacked_*`` datasets) --
  the modes of the 1,000 (digit, digit, digit) classes that the base
  classifier finds among the samples, and KL(q || uniform) of their histogram
  (`jaxgan.metrics.stacked`);
* ``fid``, ``is`` -- with the FID InceptionV3 weights (--inception_weights or
  $JAXGAN_INCEPTION_WEIGHTS): the Fréchet distance on its pool3 features and
  exp(E_x KL(p(y|x) || p(y))), mean ± std over 10 splits.

Without a classifier the feature metrics fall back to raw pixels
(``pixel_frechet_distance``, ``pixel_kid``, ``pixel_precision``, ...; phi(x) =
vec(x)), and label accuracy / mode counts are skipped with a note.

Toy runs (experiments/wgan.py): ``modes_captured``, ``high_quality_percent``,
``reverse_kl`` of the PacGAN/VEEGAN protocol (`jaxgan.metrics.modes`); the
floor scores ``n_fake`` samples of the mixture itself. A ``--num_seeds`` run
reports the mean ± std over its seeds.

Translation runs (experiments/pix2pix.py, cyclegan.py) on held-out images:
Pix2Pix ``l1_eval`` / ``l1_paper`` -- mean |G(x) - y| on [-1, 1] with G in
evaluation mode and in the paper's test-time mode (dropout on, test-batch
statistics); CycleGAN ``cycle_error_a`` / ``cycle_error_b`` -- mean
|F(G(a)) - a| and |G(F(b)) - b|, and for test splits that are paired
(``digits_edges``) ``l1_g_vs_true_b`` / ``l1_f_vs_true_a``. Their reference
column is the identity map (the input taken as the output): what a
translator that learned nothing scores (none for the cycle errors).

`ImageEvaluator`, `ToyEvaluator` and `TranslationEvaluator` hold the fixed
real references, so the trainer's periodic evaluation (`training_eval`,
--eval_every) and the scripts' final evaluation reuse them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxgan import recipes, runs, sampling, storage, trainer
from jaxgan.data import images as images_lib
from jaxgan.errors import ConfigError, StorageError
from jaxgan.families import cyclegan, gan, pix2pix
from jaxgan.metrics import classifier as clf
from jaxgan.metrics import features as features_lib
from jaxgan.metrics import frechet, inception_score, kid, modes, prdc, stacked
from jaxgan.recipes import conditional as conditional_recipe
from jaxgan.recipes import images as image_recipe

__all__ = [
  "METRICS",
  "ImageEvaluator",
  "ToyEvaluator",
  "TranslationEvaluator",
  "check_classifier",
  "evaluate_run",
  "make_evaluator",
  "metric_mode",
  "parse_metrics",
  "results_markdown",
  "training_eval",
  "write_results",
]

# Metric groups (the names --metrics takes) and the rows each one writes.
METRICS = ("fcd", "kid", "prdc", "confidence", "label_accuracy", "modes", "fid", "is")
_CLASSIFIER_ROWS = {"fcd": ("fcd",), "kid": ("kid",), "prdc": ("precision", "recall", "density", "coverage")}
_PIXEL_ROWS = {g: tuple(f"pixel_{r}" for r in rows) for g, rows in _CLASSIFIER_ROWS.items()}
_PIXEL_ROWS["fcd"] = ("pixel_frechet_distance",)
_CLASSIFIER_ROWS["confidence"] = ("confident_fraction",)  # classifier only: no pixel counterpart
CONFIDENCE_THRESHOLD = 0.9
_TOY_ROWS = ("modes_captured", "high_quality_percent", "reverse_kl")
_STACKED_ROWS = ("stacked_modes", "stacked_kl_to_uniform")
LOWER_IS_BETTER = frozenset(
  {"fcd", "kid", "pixel_frechet_distance", "pixel_kid", "fid", "reverse_kl", "stacked_kl_to_uniform"}
)
DEFAULT_NUM_IMAGES = 10000
PIXEL_FRECHET_MAX_DIM = 4096  # a d x d covariance eigendecomposition beyond this is too slow to be useful
_SAMPLE_TAG = 0xE7A2  # evaluation z / labels, folded into the evaluation seed (never the training keys)
_KID_SUBSETS = 100
_KID_SUBSET_SIZE = 1000
_IS_SPLITS = 10
_BATCH = 500
_INCEPTION_BATCH = 50

Scores = dict[str, tuple[float, float | None]]  # row -> (value, std or None)


def metric_mode(name: str) -> str:
  """ "min" when lower values of row ``name`` are better (distances, KL), else "max"."""
  return "min" if name in LOWER_IS_BETTER else "max"


def parse_metrics(names: Sequence[str] | str | None) -> tuple[str, ...] | None:
  """The metric groups asked for (None or empty: every one that applies); unknown names are a `ConfigError`."""
  if isinstance(names, str):
    names = [n for n in names.split(",")]
  names = [n.strip() for n in names or [] if n.strip()]
  unknown = [n for n in names if n not in METRICS]
  if unknown:
    raise ConfigError(f"unknown metric {unknown[0]!r} in --metrics: choose from {', '.join(METRICS)}")
  return tuple(dict.fromkeys(names)) or None


def _train_hint(dataset: str) -> str:
  return (
    f"train it with `{clf.train_command(dataset, '/tmp/clf_' + dataset)}` and pass "
    f"--classifier_workdir=/tmp/clf_{dataset}"
  )


def check_classifier(workdir: str, dataset: str, image_shape: Sequence[int], num_classes: int | None) -> dict:
  """The ``classifier.json`` of ``workdir`` after checking it was trained on ``dataset`` with these images.

  Raises `jaxgan.metrics.classifier.ClassifierNotFoundError` (with the command
  that trains it) when there is none, `ConfigError` when it was trained on
  another dataset, image shape or number of classes.
  """
  info = clf.read_classifier_info(workdir, dataset)
  if (
    info["dataset"] != dataset
    or tuple(info["image_shape"]) != tuple(image_shape)
    or (num_classes is not None and info["num_classes"] != num_classes)
  ):
    raise ConfigError(
      f"the classifier in {os.path.abspath(workdir)} was trained on {info['dataset']} "
      f"({tuple(info['image_shape'])}, {info['num_classes']} classes) but this run is {dataset} "
      f"({tuple(image_shape)}, {num_classes} classes): train one with "
      f"`{clf.train_command(dataset, '/tmp/clf_' + dataset)}`"
    )
  return info


def _features(extractor, images: np.ndarray, batch_size: int = _BATCH) -> np.ndarray:
  return features_lib.extract_features(extractor, [images], len(images), batch_size=batch_size)


class _InceptionBoth:
  """A feature extractor giving Inception's pool3 features and its logits side by side (one pass)."""

  def __init__(self, inception):
    self._inception, self.name = inception, inception.name + "+logits"

  def __call__(self, images):
    feats, logits = self._inception.features_and_logits(images)
    return jnp.concatenate([feats, logits], axis=1)


def _sanitize(value: float | None) -> float | str | None:
  """JSON has no NaN / Infinity: those become the strings "nan" / "inf" / "-inf" (None: no such number)."""
  if value is None:
    return None
  value = float(value)
  return value if math.isfinite(value) else str(value)


# ---------------------------------------------------------------------------- images


class ImageEvaluator:
  """Scores samples of an image (or cGAN) run against fixed real images; the same for real held-out ones.

  Everything that can be wrong (metric names, classifier, Inception weights,
  data) is checked in the constructor, before any state is restored; the real
  images and their features are computed there once.

  Args:
    setup: the run's `jaxgan.runs.Setup` (kind "image" or "conditional").
    metrics: metric groups (`METRICS`); None: every one that applies and has
      what it needs (the others are skipped with a note). Named groups that
      cannot be computed are a `ConfigError`.
    classifier_workdir: a classifier of experiments/train_classifier.py.
    inception_weights: the FID Inception weight file (enables fid / is).
    num_real, num_fake: sample sizes asked for; both are capped by the data
      (the floor needs ``n_fake`` held-out images) and ``n_fake`` is rounded
      down to a multiple of the classes for a cGAN. See ``n_real``, ``n_fake``.
    seed: the evaluation's seed (real subset, z, labels, BatchNorm statistics).
    with_floor: also prepare the held-out images (for `floor`).
    use_inception: False leaves fid / is out (the trainer's periodic evaluation).
  """

  def __init__(
    self,
    setup: runs.Setup,
    *,
    metrics: Sequence[str] | None = None,
    classifier_workdir: str | None = None,
    inception_weights: str | None = None,
    num_real: int = DEFAULT_NUM_IMAGES,
    num_fake: int = DEFAULT_NUM_IMAGES,
    seed: int = 0,
    with_floor: bool = True,
    use_inception: bool = True,
  ):
    cfg, kind = setup.cfg, setup.kind
    if kind not in ("image", "conditional"):
      raise ValueError(f"ImageEvaluator scores image runs, not a {kind} run")
    self.cfg, self.kind, self.seed = dict(cfg), kind, int(seed)
    self.notes: list[str] = []
    dataset = cfg["dataset"]
    self.dataset = dataset
    self.stacked_base = dataset[len("stacked_") :] if dataset.startswith("stacked_") else None
    applicable = (
      ["fcd", "kid", "prdc", "confidence"]
      + (["label_accuracy"] if kind == "conditional" else [])
      + (["modes"] if self.stacked_base else [])
      + (["fid", "is"] if use_inception else [])
    )
    explicit = metrics is not None
    if explicit:
      for name in metrics:
        if name not in applicable:
          raise ConfigError(
            f"--metrics={name} does not apply to this {kind} run of {dataset} (it takes {', '.join(applicable)})"
          )
    groups = [g for g in applicable if g in metrics] if explicit else applicable

    def skip(group: str, error: str, note: str) -> None:
      """A group that cannot be computed: an error when it was asked for by name, else a note."""
      if explicit:
        raise ConfigError(error)
      self.notes.append(note)
      groups.remove(group)

    source, self.image_shape = setup.info["source"], setup.info["image_shape"]
    self.num_classes = source.num_classes
    # ------------------------------------------------------------ the classifier
    self.classifier, self.classifier_info, self.stacked_logits = None, None, None
    needs = [g for g in groups if g in ("fcd", "confidence", "label_accuracy", "modes")]
    if classifier_workdir:
      info = clf.read_classifier_info(classifier_workdir, self.stacked_base or dataset)
      if self.stacked_base and info["dataset"] == self.stacked_base:
        check_classifier(classifier_workdir, self.stacked_base, (*self.image_shape[:2], 1), None)
        self.stacked_logits = clf.ClassifierFeatures(classifier_workdir, self.stacked_base).logits_fn
        if explicit and "fcd" in groups:
          raise ConfigError(
            f"--metrics=fcd needs a classifier trained on {dataset}; the one in "
            f"{os.path.abspath(classifier_workdir)} is trained on {self.stacked_base} (it serves the "
            f"stacked mode count): {_train_hint(dataset)}"
          )
        if any(g in groups for g in ("fcd", "kid", "prdc")):
          self.notes.append(
            f"the classifier is trained on {self.stacked_base}: FCD, KID and precision/recall are computed on pixels"
          )
      else:
        check_classifier(classifier_workdir, dataset, self.image_shape, self.num_classes)
        self.classifier = clf.ClassifierFeatures(classifier_workdir, dataset)
        if "modes" in groups:
          skip(
            "modes",
            f"--metrics=modes counts stacked modes with a classifier trained on {self.stacked_base}: "
            f"{_train_hint(self.stacked_base)}",
            f"stacked modes skipped: they need a classifier trained on {self.stacked_base}",
          )
      self.classifier_info = {k: info.get(k) for k in ("arch", "dataset", "test_accuracy", "params_digest")} | {
        "workdir": os.path.abspath(classifier_workdir)
      }
    elif needs and explicit:
      target = self.stacked_base if needs == ["modes"] else dataset
      raise ConfigError(f"--metrics={needs[0]} needs a classifier trained on real {target}: {_train_hint(target)}")
    if self.classifier is None:
      skipped = [
        g for g in groups if g in ("confidence", "label_accuracy") or (g == "modes" and self.stacked_logits is None)
      ]
      groups = [g for g in groups if g not in skipped]
      on_pixels = [g for g in groups if g in ("fcd", "kid", "prdc")]
      if not classifier_workdir and (skipped or on_pixels):
        what = ", ".join(
          [f"{', '.join(skipped)} skipped"] * bool(skipped)
          + [f"{', '.join(on_pixels)} computed on pixels (pixel_*)"] * bool(on_pixels)
        )
        self.notes.append(
          f"no --classifier_workdir: {what}; for classifier features {_train_hint(self.stacked_base or dataset)}"
        )
    dims = int(np.prod(self.image_shape))
    if self.classifier is None and "fcd" in groups and dims > PIXEL_FRECHET_MAX_DIM:
      skip(
        "fcd",
        f"--metrics=fcd without a classifier would be a Fréchet distance on {dims} pixels (too large a covariance): "
        f"{_train_hint(dataset)}",
        f"pixel Fréchet distance skipped: {dims} pixel dimensions > {PIXEL_FRECHET_MAX_DIM}",
      )
    # ------------------------------------------------------------ Inception
    self.inception, self.inception_weights = None, None
    wants_inception = [g for g in groups if g in ("fid", "is")]
    if wants_inception and inception_weights:
      from jaxgan.metrics import inception as inception_lib

      try:
        self.inception = _InceptionBoth(inception_lib.InceptionFeatures(inception_weights))
      except (OSError, ValueError) as e:
        raise ConfigError(f"--inception_weights={inception_weights}: {str(e).splitlines()[0]}") from None
      self.inception_weights = os.path.abspath(inception_weights)
    elif wants_inception and explicit:
      raise ConfigError(
        f"--metrics={wants_inception[0]} needs the FID Inception weights: pass --inception_weights="
        "FILE or set JAXGAN_INCEPTION_WEIGHTS (see jaxgan/metrics/inception.py; nothing is "
        "downloaded)"
      )
    elif wants_inception:
      self.notes.append("fid and is skipped: no --inception_weights (or $JAXGAN_INCEPTION_WEIGHTS)")
      groups = [g for g in groups if g not in ("fid", "is")]
    self.groups = groups
    # ------------------------------------------------------------ real images and sizes
    self.held_out = None
    held_source = None
    if with_floor:
      split = cfg.get("split", "train")
      other = "test" if split != "test" else "train"
      try:
        held_source, _ = image_recipe.open_dataset(cfg, split=other)
        self.held_out = f"{other} split"
      except images_lib.DataError:
        self.held_out = "disjoint training images"
    if with_floor and held_source is not None:
      n_real, n_fake = min(num_real, len(source)), min(num_fake, len(held_source))
      offset = 0
    elif with_floor:
      n_fake = min(num_fake, len(source) // 2)
      n_real, offset = min(num_real, len(source) - n_fake), n_fake
      held_source = source
    else:
      n_real, n_fake, offset = min(num_real, len(source)), num_fake, 0
    if kind == "conditional":
      self.per_class = n_fake // self.num_classes
      if self.per_class < 1:
        raise ConfigError(
          f"{n_fake} samples are fewer than the {self.num_classes} classes: raise num_fake (--eval_samples)"
        )
      n_fake = self.per_class * self.num_classes
    if n_real < 4 or n_fake < 4:
      raise ConfigError(f"too few images to evaluate: n_real={n_real}, n_fake={n_fake} (at least 4 each)")
    if n_fake < num_fake and with_floor:
      self.notes.append(
        f"n_fake = {n_fake} < {num_fake} asked for: the floor needs as many real held-out images ({self.held_out})"
      )
    if n_real < num_real:
      self.notes.append(f"n_real = {n_real} < {num_real} asked for: the training data has {len(source)} images")
    self.n_real, self.n_fake = n_real, n_fake
    self.real, _ = image_recipe.reference_images(source, n_real, self.seed, offset=offset)
    self._held = (lambda: image_recipe.reference_images(held_source, n_fake, self.seed)) if with_floor else None
    self._real_feats = {space: self._extract(space, self.real) for space in self._spaces()}

  # ---------------------------------------------------------------------------- names
  @property
  def feature_space(self) -> str:
    return self.classifier.name if self.classifier is not None else "pixels"

  def _spaces(self) -> list[str]:
    out = []
    if any(g in self.groups for g in ("fcd", "kid", "prdc")):
      out.append("features")
    if "fid" in self.groups:
      out.append("inception")
    return out

  @property
  def metric_names(self) -> list[str]:
    """The rows `scores` returns, in table order."""
    rows = _CLASSIFIER_ROWS if self.classifier is not None else _PIXEL_ROWS
    names = []
    for group in self.groups:
      if group in rows:
        names += rows[group]
      elif group == "modes":
        names += _STACKED_ROWS
      else:
        names.append(group)
    return names

  def space_of(self, row: str) -> str:
    if row in ("fid", "is"):
      return self.inception._inception.name if self.inception else "inception"
    if row in ("label_accuracy", "confident_fraction") + _STACKED_ROWS:
      return "classifier logits"
    return self.feature_space

  # ---------------------------------------------------------------------------- computing
  def _extract(self, space: str, images: np.ndarray) -> np.ndarray:
    if space == "features":
      extractor = self.classifier if self.classifier is not None else features_lib.FlattenFeatures()
      return _features(extractor, images)
    return _features(self.inception, images, _INCEPTION_BATCH)

  def _score(self, images: np.ndarray, labels: np.ndarray | None) -> Scores:
    """Every metric of ``images`` (samples or held-out real images) against the real reference."""
    out: Scores = {}
    pixel = self.classifier is None
    if "features" in self._spaces():
      real, feats = self._real_feats["features"], self._extract("features", images)
      if "fcd" in self.groups:
        out["pixel_frechet_distance" if pixel else "fcd"] = (frechet.fid_from_features(real, feats), None)
      if "kid" in self.groups:
        out["pixel_kid" if pixel else "kid"] = kid.kernel_inception_distance(
          real, feats, n_subsets=_KID_SUBSETS, subset_size=_KID_SUBSET_SIZE, seed=self.seed
        )
      if "prdc" in self.groups:
        for k, v in prdc.prdc(real, feats, k=3).items():
          out[f"pixel_{k}" if pixel else k] = (float(v), None)
    if "confidence" in self.groups:
      out["confident_fraction"] = (
        clf.confident_fraction(self.classifier.logits_fn, images, CONFIDENCE_THRESHOLD),
        None,
      )
    if "label_accuracy" in self.groups:
      acc = clf.label_accuracy(self.classifier.logits_fn, images, labels, self.num_classes)
      out["label_accuracy"] = (acc["accuracy"], None)
    if "modes" in self.groups:
      counted = stacked.stacked_mode_count(self.stacked_logits, images)
      out["stacked_modes"] = (float(counted["modes"]), None)
      out["stacked_kl_to_uniform"] = (float(counted["kl_to_uniform"]), None)
    if "fid" in self.groups or "is" in self.groups:
      from jaxgan.metrics.inception import POOL_DIM

      both = self._extract("inception", images)
      feats, logits = both[:, :POOL_DIM], both[:, POOL_DIM:]
      if "fid" in self.groups:
        real = self._real_feats["inception"][:, :POOL_DIM]
        out["fid"] = (frechet.fid_from_features(real, feats), None)
      if "is" in self.groups:
        out["is"] = inception_score.inception_score(logits, n_splits=min(_IS_SPLITS, len(logits)), from_logits=True)
    return {name: out[name] for name in self.metric_names}

  def samples(self, state, config: gan.Config) -> tuple[np.ndarray, np.ndarray | None]:
    """``n_fake`` samples of the sampling generator (and their requested labels for a cGAN)."""
    key = jax.random.fold_in(jax.random.PRNGKey(self.seed), _SAMPLE_TAG)
    if self.kind == "conditional":
      st = conditional_recipe.sampling_state(state, config, jax.random.fold_in(key, 1))
      return sampling.sample_per_class(st, config, jax.random.fold_in(key, 2), self.per_class)
    st = image_recipe.sampling_state(state, config, self.seed)
    return sampling.generate(st, sampling.latents(self.seed, _SAMPLE_TAG, self.n_fake, config)), None

  def scores(self, state, config: gan.Config) -> Scores:
    """The metrics of the run's samples: {row: (value, std or None)}."""
    return self._score(*self.samples(state, config))

  def floor(self) -> Scores:
    """The same metrics for ``n_fake`` real held-out images instead of samples."""
    if self._held is None:
      raise ValueError("this evaluator was built with with_floor=False")
    return self._score(*self._held())


# ---------------------------------------------------------------------------- toy


class ToyEvaluator:
  """Mode metrics of a 2-D mixture run (`jaxgan.metrics.modes`); floor: samples of the mixture itself."""

  def __init__(
    self, setup: runs.Setup, *, metrics: Sequence[str] | None = None, num_fake: int | None = None, seed: int = 0
  ):
    if metrics is not None and set(metrics) != {"modes"}:
      bad = [m for m in metrics if m != "modes"][0]
      raise ConfigError(f"--metrics={bad} does not apply to this toy run of {setup.cfg['dataset']} (it takes modes)")
    self.mixture = setup.info["mixture"]
    self.seed, self.notes, self.groups = int(seed), [], ["modes"]
    self.n_fake = int(num_fake or modes.NUM_EVAL_SAMPLES)
    self.n_real = self.n_fake  # the floor's mixture samples
    self.held_out = "samples of the mixture"
    self.metric_names = list(_TOY_ROWS)
    self.classifier_info = self.inception_weights = None

  def space_of(self, row: str) -> str:
    return "2-D points"

  def _score(self, points: np.ndarray) -> Scores:
    m = modes.mode_metrics(points, self.mixture.means_array(), self.mixture.std).as_dict()
    return {name: (float(m[name]), None) for name in _TOY_ROWS}

  def scores(self, state, config: gan.Config) -> Scores:
    z = sampling.latents(self.seed, _SAMPLE_TAG, self.n_fake, config)
    return self._score(sampling.generate(state, z))

  def floor(self) -> Scores:
    key = jax.random.fold_in(jax.random.PRNGKey(self.seed), _SAMPLE_TAG)
    return self._score(np.asarray(self.mixture.sample(key, self.n_fake)))


# ---------------------------------------------------------------------------- translation


class TranslationEvaluator:
  """Held-out errors of a Pix2Pix or CycleGAN run, beside the identity map's.

  Pix2Pix (kind "paired"): ``l1_eval``, ``l1_paper`` (mean |G(x) - y|, G in
  evaluation and in the paper's test-time mode) on the --eval_split pairs;
  reference: mean |x - y|. CycleGAN (kind "unpaired"): ``cycle_error_a``,
  ``cycle_error_b`` on the test images of each domain (no reference) and,
  for paired test splits (``digits_edges``), ``l1_g_vs_true_b`` /
  ``l1_f_vs_true_a`` with the identity map's L1 as reference.

  Args:
    setup: the run's `jaxgan.runs.Setup`.
    num_fake: held-out examples to translate (at most; default 1,000).
    batch_size: translation batch.
  """

  def __init__(
    self, setup: runs.Setup, *, metrics: Sequence[str] | None = None, num_fake: int | None = None, batch_size: int = 64
  ):
    if metrics is not None:
      raise ConfigError(f"--metrics does not apply to {setup.kind} translation runs: leave it empty")
    self.setup, self.kind, self.notes = setup, setup.kind, []
    self.batch_size = int(batch_size)
    limit = int(num_fake or 1000)
    self.classifier_info = self.inception_weights = None
    self.groups = ["translation"]
    if self.kind == "paired":
      held = setup.info.get("held_out")
      if held is None:
        raise ConfigError("this pix2pix run has no held-out split (--eval_split was empty): nothing to evaluate")
      a, b = (images_lib.to_float(x[:limit]) for x in held.arrays())
      self.inputs, self.targets = a, b
      self.metric_names = ["l1_eval", "l1_paper"]
      self.held_out = f"{setup.cfg.get('eval_split')} split"
      self.n_fake = len(a)
    else:
      test_a, test_b = setup.info["test_sources"]
      self.a = images_lib.to_float(np.stack([test_a[i]["image"] for i in range(min(limit, len(test_a)))]))
      self.b = images_lib.to_float(np.stack([test_b[i]["image"] for i in range(min(limit, len(test_b)))]))
      self.metric_names = ["cycle_error_a", "cycle_error_b"]
      eval_split = setup.cfg.get("eval_split", "test")
      self.paired_test = setup.cfg.get("dataset") == "digits_edges" and bool(eval_split)
      if self.paired_test:
        self.metric_names += ["l1_g_vs_true_b", "l1_f_vs_true_a"]
      self.held_out = f"{eval_split} split" if eval_split else "training images"
      self.n_fake = len(self.a)
    self.n_real = self.n_fake

  def space_of(self, row: str) -> str:
    return "pixels in [-1, 1]"

  def _run(self, fn, x):
    return sampling.batched(fn, x, self.batch_size)

  def translations(self, state) -> dict[str, np.ndarray]:
    """The held-out outputs: Pix2Pix ``eval`` / ``paper``; CycleGAN ``fake_b``, ``fake_a``, ``rec_a``, ``rec_b``."""
    if self.kind == "paired":
      key = jax.random.fold_in(jax.random.PRNGKey(int(self.setup.cfg["seed"])), 0xE7A1)
      return {
        mode: self._run(lambda x, train=(mode == "paper"): _translate_pix2pix(state, x, train, key), self.inputs)
        for mode in ("eval", "paper")
      }
    fake_b = self._run(lambda x: _translate_cyclegan(state, x, "AtoB"), self.a)
    fake_a = self._run(lambda x: _translate_cyclegan(state, x, "BtoA"), self.b)
    return {
      "fake_b": fake_b,
      "fake_a": fake_a,
      "rec_a": self._run(lambda x: _translate_cyclegan(state, x, "BtoA"), fake_b),
      "rec_b": self._run(lambda x: _translate_cyclegan(state, x, "AtoB"), fake_a),
    }

  def scores(self, state, config=None) -> Scores:
    del config
    out = self.translations(state)
    if self.kind == "paired":
      return {f"l1_{mode}": (_l1(out[mode], self.targets), None) for mode in ("eval", "paper")}
    scores = {"cycle_error_a": (_l1(out["rec_a"], self.a), None), "cycle_error_b": (_l1(out["rec_b"], self.b), None)}
    if self.paired_test:
      scores["l1_g_vs_true_b"] = (_l1(out["fake_b"], self.b), None)
      scores["l1_f_vs_true_a"] = (_l1(out["fake_a"], self.a), None)
    return scores

  def floor(self) -> Scores:
    """The identity map's errors (None where it has none to compare with)."""
    if self.kind == "paired":
      identity = _l1(self.inputs, self.targets) if self.inputs.shape == self.targets.shape else None
      return {name: (identity, None) for name in self.metric_names}
    identity = _l1(self.a, self.b) if self.paired_test else None
    return {name: (None if name.startswith("cycle") else identity, None) for name in self.metric_names}


def _l1(x: np.ndarray, y: np.ndarray) -> float:
  return float(np.mean(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32))))


_translate_pix2pix = jax.jit(
  lambda state, x, train, key: pix2pix.sample(state, x, train=train, key=key), static_argnums=2
)
_translate_cyclegan = jax.jit(cyclegan.sample, static_argnames=("direction", "train"))


def make_evaluator(
  setup: runs.Setup,
  *,
  metrics: Sequence[str] | None = None,
  classifier_workdir: str | None = None,
  inception_weights: str | None = None,
  num_real: int | None = None,
  num_fake: int | None = None,
  seed: int = 0,
  with_floor: bool = True,
):
  """The evaluator for a run of any kind (`ImageEvaluator`, `ToyEvaluator`, `TranslationEvaluator`)."""
  if setup.kind == "toy":
    return ToyEvaluator(setup, metrics=metrics, num_fake=num_fake, seed=seed)
  if setup.kind in ("paired", "unpaired"):
    return TranslationEvaluator(setup, metrics=metrics, num_fake=num_fake)
  return ImageEvaluator(
    setup,
    metrics=metrics,
    classifier_workdir=classifier_workdir,
    inception_weights=inception_weights,
    num_real=num_real or DEFAULT_NUM_IMAGES,
    num_fake=num_fake or DEFAULT_NUM_IMAGES,
    seed=seed,
    with_floor=with_floor,
  )


# ---------------------------------------------------------------------------- a whole run


def evaluate_run(
  workdir: str,
  *,
  step: str | int = "latest",
  metrics: Sequence[str] | str | None = None,
  classifier_workdir: str | None = None,
  inception_weights: str | None = None,
  num_real: int | None = None,
  num_fake: int | None = None,
  seed: int = 0,
) -> dict:
  """Restores checkpoint ``step`` of the run in ``workdir`` and scores it beside the real-vs-real floor.

  Args:
    workdir: a run of any experiment (`jaxgan.recipes.EXPERIMENTS`).
    step: "latest", "best" (checkpoints_best/) or a step number.
    metrics: groups from `METRICS` (None: all that apply; see `ImageEvaluator`).
    classifier_workdir: the dataset's classifier (experiments/train_classifier.py).
    inception_weights: FID Inception weights (default: $JAXGAN_INCEPTION_WEIGHTS).
    num_real, num_fake: sample sizes (default 10,000 images, capped by the
      data; 2,500 points for toy runs).
    seed: the evaluation's seed.

  Returns:
    ``{"header": {...}, "records": [...]}``: one record per row with
    ``metric``, ``value``, ``floor``, ``n_real``, ``n_fake``, ``step`` (and
    ``std`` / ``floor_std`` with ``std_of`` for KID, IS and multi-seed runs,
    ``feature_space``); the header names the run, checkpoint, classifier and
    parameters (``ema`` or ``generator``).
  """
  groups = parse_metrics(metrics)
  step = runs.parse_step(step)
  cfg = runs.read_flags(workdir, scripts="an " + recipes.SCRIPTS)
  setup = recipes.setup(cfg)
  if inception_weights is None:
    from jaxgan.metrics.inception import ENV_VAR

    inception_weights = os.environ.get(ENV_VAR) or None
  evaluator = make_evaluator(
    setup,
    metrics=groups,
    classifier_workdir=classifier_workdir,
    inception_weights=inception_weights,
    num_real=num_real,
    num_fake=num_fake,
    seed=seed,
  )
  for note in evaluator.notes:
    logging.info("note: %s", note)
  run = runs.restore(setup, workdir, step)
  floor = evaluator.floor()
  per_seed = [(s, evaluator.scores(st, setup.config)) for s, st in run.single_states()]
  records = []
  for name in evaluator.metric_names:
    values = [scores[name] for _, scores in per_seed]
    record = {"metric": name}
    if len(values) == 1:
      record["value"] = _sanitize(values[0][0])
      if values[0][1] is not None:
        record["std"], record["std_of"] = _sanitize(values[0][1]), "splits" if name == "is" else "subsets"
    else:
      v = np.asarray([x for x, _ in values], np.float64)
      record.update(
        value=_sanitize(v.mean()),
        std=_sanitize(v.std()),
        std_of="seeds",
        per_seed={str(s): _sanitize(x) for (s, _), x in zip(per_seed, v)},
      )
    record["floor"] = _sanitize(floor[name][0])
    if floor[name][1] is not None:
      record["floor_std"] = _sanitize(floor[name][1])
    record.update(
      n_real=evaluator.n_real, n_fake=evaluator.n_fake, step=run.step, feature_space=evaluator.space_of(name)
    )
    records.append(record)
  best = trainer.read_best(run.workdir) if run.checkpoint == "best" else None
  header = {
    "workdir": run.workdir,
    "experiment": run.experiment,
    "kind": run.kind,
    "dataset": cfg["dataset"],
    "checkpoint": run.checkpoint,
    "step": run.step,
    "best": None if best is None else {k: best.get(k) for k in ("best_metric", "best_mode", "best_value", "step")},
    "parameters": "ema" if getattr(run.state, "ema_params", None) is not None else "generator",
    "classifier": evaluator.classifier_info,
    "inception_weights": evaluator.inception_weights,
    "held_out": evaluator.held_out,
    "seed": seed,
    "seeds": [s for s, _ in per_seed],
    "notes": evaluator.notes,
  }
  return {"header": header, "records": records}


def _fmt(value: Any, std: Any = None) -> str:
  if value is None:
    return "n/a"
  text = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
  if std is not None:
    text += f" ± {std:.2g}" if isinstance(std, (int, float)) else f" ± {std}"
  return text


def results_markdown(records: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None) -> str:
  """The Mimicry-style table ``metric | value | real-vs-real floor | n_real | n_fake | step`` (and a title line
  and notes when ``header`` is given). KID and IS are written mean ± std."""
  lines = []
  if header is not None:
    title = (
      f"{header['experiment']} on {header['dataset']}, checkpoint {header['checkpoint']} (step "
      f"{header['step']}), {header['parameters']} parameters"
    )
    if header.get("best"):
      title += f" (best {header['best']['best_metric']} = {header['best']['best_value']:.4g})"
    if header.get("classifier"):
      c = header["classifier"]
      title += f"; features: {c['arch']} trained on {c['dataset']}"
      if isinstance(c.get("test_accuracy"), (int, float)):
        title += f" (test accuracy {100 * c['test_accuracy']:.1f}%)"
    lines += [title, ""]
  lines += ["| metric | value | real-vs-real floor | n_real | n_fake | step |", "|---|---|---|---|---|---|"]
  for r in records:
    lines.append(
      f"| {r['metric']} | {_fmt(r['value'], r.get('std'))} | {_fmt(r['floor'], r.get('floor_std'))} | "
      f"{r['n_real']} | {r['n_fake']} | {r['step']} |"
    )
  if header is not None and len(header.get("seeds") or []) > 1:
    lines += ["", f"values: mean ± std over seeds {header['seeds']}"]
  if header is not None and header.get("notes"):
    lines += [""] + [f"- {note}" for note in header["notes"]]
  return "\n".join(lines) + "\n"


def write_results(result: Mapping[str, Any], directory: str | None = None) -> tuple[str, str]:
  """Writes ``results_step<step>.json`` and ``.md`` to ``directory`` (default ``<workdir>/eval``)."""
  header = result["header"]
  directory = directory or os.path.join(header["workdir"], "eval")
  base = os.path.join(directory, f"results_step{header['step']}")
  try:
    os.makedirs(directory, exist_ok=True)
    storage.dump_json(base + ".json", {**header, "records": result["records"]})
    tmp = base + ".md.tmp"
    with open(tmp, "w") as f:
      f.write(results_markdown(result["records"], header))
    os.replace(tmp, base + ".md")
  except OSError as e:
    raise StorageError(f"cannot write the results to {directory} ({e.strerror or e})") from None
  return base + ".json", base + ".md"


# ---------------------------------------------------------------------------- during training


def training_eval(
  setup: runs.Setup,
  *,
  eval_every: int,
  best_metric: str | None,
  classifier_workdir: str | None,
  num_samples: int,
) -> tuple[Callable[[Any, int], dict] | None, str | None, str]:
  """The trainer's ``(eval_fn, best_metric, best_mode)`` for --eval_every / --best_metric.

  ``eval_fn(state, step)`` scores ``num_samples`` samples (z, labels and
  real subset fixed by the run's seed, never the training keys) against as
  many real training images: with the classifier FCD, KID and
  precision/recall/density/coverage in its feature space (and label accuracy
  for a cGAN), else the ``pixel_*`` numbers; never Inception (too slow to
  repeat). Bad settings are a `ConfigError` before anything is trained.
  """
  if not eval_every:
    if best_metric:
      raise ConfigError(f"--best_metric={best_metric} needs --eval_every > 0 (how often to evaluate)")
    return None, None, "min"
  cfg, config = setup.cfg, setup.config
  if setup.kind == "toy":
    evaluator = ToyEvaluator(setup, num_fake=num_samples, seed=cfg["seed"])
  elif setup.kind in ("paired", "unpaired"):
    evaluator = TranslationEvaluator(setup, num_fake=num_samples)
  else:
    evaluator = ImageEvaluator(
      setup,
      classifier_workdir=classifier_workdir,
      num_real=num_samples,
      num_fake=num_samples,
      seed=cfg["seed"],
      with_floor=False,
      use_inception=False,
    )
  names = evaluator.metric_names
  if best_metric and best_metric not in names:
    hint = "" if classifier_workdir else "; fcd, kid, precision, recall and label_accuracy need --classifier_workdir"
    raise ConfigError(
      f"--best_metric={best_metric} is not computed by this run's evaluation (it computes {', '.join(names)}){hint}"
    )
  for note in evaluator.notes:
    logging.info("evaluation: %s", note)

  def eval_fn(state, step):
    del step
    out = {}
    for name, (value, std) in evaluator.scores(state, config).items():
      out[name] = value
      if std is not None:
        out[f"{name}_std"] = std
    return out

  return eval_fn, best_metric or None, metric_mode(best_metric) if best_metric else "min"
