"""Domain classifiers: trained on real data, used to judge generated samples.

What lives here:

* Three small Flax classifiers, one per image domain, each mapping images in
  [-1, 1] to ``(logits, features)`` where ``features`` is the penultimate
  (post-ReLU) layer:

  - :class:`DigitsCNN` for the vendored 8x8 UCI digits;
  - :class:`LeNet` for 28x28 MNIST / Fashion-MNIST (LeCun et al., 1998,
    "Gradient-based learning applied to document recognition": two
    convolution + max-pool stages, then fully connected layers);
  - :class:`CifarCNN` for 32x32x3 CIFAR-10 (a small VGG-style network,
    Simonyan & Zisserman, 2015: pairs of 3x3 convolutions, then 2x2 pooling).

* :func:`train_classifier` -- deterministic minibatch AdamW on softmax cross
  entropy, ``L(theta) = -1/B sum_i log softmax(f_theta(x_i))_{y_i}``;
  :func:`save_classifier` / :func:`load_classifier` -- parameters with orbax
  plus ``classifier.json`` (architecture, dataset, accuracy).

* Uses of a trained classifier on generated samples:

  - :class:`ClassifierFeatures` -- a `jaxgan.metrics.features.FeatureExtractor`
    for the Fréchet *classifier* distance (FID computed in the classifier's
    feature space instead of Inception's; the approach of e.g. the "FCD" of
    Heusel et al.'s follow-ups and of Lucic et al., 2018, for MNIST-like data);
  - :func:`label_accuracy` -- the fraction of conditional samples G(z, y) that
    the classifier assigns to the requested class y (the "classification
    accuracy" test of conditional GANs, e.g. Odena et al., 2017, AC-GAN);
  - :func:`class_coverage` -- mode counting: how many classes the predicted
    labels of unconditional samples cover, and KL(q || uniform) of the
    predicted class histogram q (as for Stacked MNIST in Metz et al., 2017,
    and Srivastava et al., 2017).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from jaxgan.errors import JaxganError
from jaxgan.models.layers import glorot_uniform_init

__all__ = [
  "ARCHITECTURES",
  "DATASET_ARCHITECTURE",
  "CifarCNN",
  "ClassifierFeatures",
  "ClassifierNotFoundError",
  "DigitsCNN",
  "LeNet",
  "TrainConfig",
  "architecture_for",
  "class_coverage",
  "cosine_lr",
  "dataset_arrays",
  "load_classifier",
  "make_apply_fns",
  "predict",
  "read_classifier_info",
  "intra_class_diversity",
  "label_accuracy",
  "save_classifier",
  "train_classifier",
  "train_command",
]

INFO_FILE = "classifier.json"
PARAMS_DIR = "params"
FORMAT = "jaxgan.classifier/1"

LogitsFn = Callable[[jax.Array], jax.Array]


# Glorot-uniform kernels sampled flat (compiles in a fraction of the time of N-D sampling on CPU).
_INIT = glorot_uniform_init()


class ClassifierNotFoundError(JaxganError, FileNotFoundError):
  """A classifier workdir that does not hold a trained classifier."""


# --------------------------------------------------------------------------
# Architectures.


class _ConvClassifier(nn.Module):
  """Base of the classifiers: the architecture's convolutional :meth:`trunk`, then the shared head::

      flatten -> [Dropout if dropout_before_fc] -> Dense(features) -> ReLU   # the features
      Dropout -> Dense(num_classes)                                         # logits

  ``__call__(x, *, train)`` returns ``(logits, features)``.
  """

  num_classes: int = 10
  width: int = 32
  features: int = 256
  dropout: float = 0.5

  dropout_before_fc: ClassVar[bool] = False

  def trunk(self, x: jax.Array) -> jax.Array:
    """The convolutional layers: images (B, H, W, C) -> feature maps."""
    raise NotImplementedError

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    h = self.trunk(x)
    h = h.reshape(h.shape[0], -1)
    if self.dropout_before_fc:
      h = nn.Dropout(self.dropout)(h, deterministic=not train)
    f = nn.relu(nn.Dense(self.features, kernel_init=_INIT, name="fc")(h))
    h = nn.Dropout(self.dropout)(f, deterministic=not train)
    return nn.Dense(self.num_classes, kernel_init=_INIT, name="logits")(h), f


class DigitsCNN(_ConvClassifier):
  """Classifier for 8x8x1 digits.

  Architecture::

      Conv(width, 3x3) -> ReLU                       # 8x8
      Conv(2*width, 3x3, stride 2) -> ReLU           # 4x4
      flatten -> Dense(features) -> ReLU             # the features
      Dropout -> Dense(num_classes)                  # logits
  """

  features: int = 128
  dropout: float = 0.25

  def trunk(self, x):
    h = nn.relu(nn.Conv(self.width, (3, 3), padding="SAME", kernel_init=_INIT, name="conv1")(x))
    return nn.relu(nn.Conv(2 * self.width, (3, 3), strides=(2, 2), padding="SAME", kernel_init=_INIT, name="conv2")(h))


class LeNet(_ConvClassifier):
  """LeNet-style classifier for 28x28 images (MNIST, Fashion-MNIST).

  Architecture (LeCun et al., 1998, with ReLU, max-pooling and wider layers)::

      Conv(width, 5x5) -> ReLU -> MaxPool 2x2        # 14x14
      Conv(2*width, 5x5) -> ReLU -> MaxPool 2x2      # 7x7
      flatten -> Dense(features) -> ReLU             # the features
      Dropout -> Dense(num_classes)                  # logits
  """

  features: int = 256
  dropout: float = 0.5

  def trunk(self, x):
    h = x
    for i, ch in enumerate((self.width, 2 * self.width)):
      h = nn.relu(nn.Conv(ch, (5, 5), padding="SAME", kernel_init=_INIT, name=f"conv{i + 1}")(h))
      h = nn.max_pool(h, (2, 2), strides=(2, 2))
    return h


class CifarCNN(_ConvClassifier):
  """Small VGG-style classifier for 32x32x3 images (CIFAR-10).

  Architecture::

      for c in (width, 2*width, 4*width):            # 32 -> 16 -> 8 -> 4
          Conv(c, 3x3) -> ReLU -> Conv(c, 3x3) -> ReLU -> MaxPool 2x2
      flatten -> Dropout -> Dense(features) -> ReLU  # the features
      Dropout -> Dense(num_classes)                  # logits
  """

  features: int = 256
  dropout: float = 0.3

  dropout_before_fc: ClassVar[bool] = True

  def trunk(self, x):
    h = x
    for i, ch in enumerate((self.width, 2 * self.width, 4 * self.width)):
      h = nn.relu(nn.Conv(ch, (3, 3), padding="SAME", kernel_init=_INIT, name=f"conv{i + 1}a")(h))
      h = nn.relu(nn.Conv(ch, (3, 3), padding="SAME", kernel_init=_INIT, name=f"conv{i + 1}b")(h))
      h = nn.max_pool(h, (2, 2), strides=(2, 2))
    return h


ARCHITECTURES: dict[str, type[nn.Module]] = {"digits_cnn": DigitsCNN, "lenet": LeNet, "cifar_cnn": CifarCNN}
DATASET_ARCHITECTURE = {"digits": "digits_cnn", "mnist": "lenet", "fashion_mnist": "lenet", "cifar10": "cifar_cnn"}


def architecture_for(dataset: str, image_shape: tuple[int, ...]) -> str:
  """The architecture name for a dataset: by name, else by image size (8, 28 or 32 px)."""
  if dataset in DATASET_ARCHITECTURE:
    return DATASET_ARCHITECTURE[dataset]
  by_size = {8: "digits_cnn", 28: "lenet", 32: "cifar_cnn"}
  if image_shape[0] != image_shape[1] or image_shape[0] not in by_size:
    raise JaxganError(
      f"no classifier architecture for {dataset!r} images of shape {tuple(image_shape)}: "
      "supported are 8x8, 28x28 and 32x32 (square) images"
    )
  return by_size[image_shape[0]]


def dataset_arrays(
  name: str, split: str, data_dir: str | None = None, image_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """All of a labelled split as uint8 images (N, H, W, C) and int32 labels (N,).

  ``image_size`` resizes every image as a GAN run's ``--image_size
  --convert_data`` does (centre crop to a square, bilinear), so a classifier
  can score runs on resized data (e.g. the 8x8 digits at 32 px).
  """
  from jaxgan.data import images as images_lib  # the data pipeline imports tfds; keep it lazy

  source = images_lib.make_source(name, split, data_dir, image_size=image_size or None)
  if source.num_classes is None:
    raise images_lib.DataError(f"{name} split {split!r} has no labels: a classifier needs labelled data")
  examples = [source[i] for i in range(len(source))]
  return (np.stack([e["image"] for e in examples]), np.asarray([e["label"] for e in examples], np.int32))


# --------------------------------------------------------------------------
# Training.


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Minibatch AdamW with a cosine-decayed learning rate (see `train_classifier`).

  Attributes:
    epochs: passes over the training set (each reshuffled from ``seed``).
    batch_size: examples per update (the last partial batch of an epoch is dropped).
    lr: peak learning rate (cosine decay to 0 over the run).
    weight_decay: AdamW's decoupled weight decay.
    max_shift: data augmentation: every training image is translated by a
      uniform random integer offset in [-max_shift, max_shift] along each
      axis (background-filled); 0 disables it.
    seed: initialisation, shuffling, augmentation and dropout.
  """

  epochs: int = 30
  batch_size: int = 64
  lr: float = 2e-3
  weight_decay: float = 1e-4
  max_shift: int = 0
  seed: int = 0


def random_shift(key: jax.Array, x: jax.Array, max_shift: int) -> jax.Array:
  """Translates each image of x (N, H, W, C) by its own offset in [-max_shift, max_shift]^2.

  Pixels shifted in take the background value -1 (black in [-1, 1]).
  """
  if max_shift <= 0:
    return x
  _, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)), constant_values=-1.0)
  offsets = jax.random.randint(key, (x.shape[0], 2), 0, 2 * max_shift + 1)

  def crop(img, off):
    return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

  return jax.vmap(crop)(padded, offsets)


def _to_unit_range(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1] (float inputs pass through)."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 127.5 - 1.0
  return images.astype(jnp.float32)


def _direction(weight_decay: float) -> optax.GradientTransformation:
  """AdamW's update direction, Adam(g) + lambda * theta; the step size multiplies it outside.

  Keeping the (scheduled) learning rate out of the optimiser makes the
  compiled step independent of the run length, so runs share compilations.
  """
  return optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(weight_decay))


@functools.partial(jax.jit, static_argnames=("module", "shape"))
def _init_params(key: jax.Array, *, module: nn.Module, shape: tuple[int, ...]) -> Any:
  return module.init(key, jnp.zeros((1, *shape), jnp.float32), train=False)["params"]


@functools.partial(jax.jit, static_argnames=("module", "weight_decay", "max_shift"), donate_argnums=(0, 1))
def _train_step(params, opt_state, x, y, key, lr, *, module: nn.Module, weight_decay: float, max_shift: int):
  def loss_fn(p):
    shift_key, drop_key = jax.random.split(key)
    xs = random_shift(shift_key, _to_unit_range(x), max_shift)
    logits, _ = module.apply({"params": p}, xs, train=True, rngs={"dropout": drop_key})
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  loss, grads = jax.value_and_grad(loss_fn)(params)
  direction, opt_state = _direction(weight_decay).update(grads, opt_state, params)
  params = jax.tree.map(lambda p, d: p - lr * d, params, direction)
  return params, opt_state, loss


def cosine_lr(peak: float, step: int, total: int) -> float:
  """Cosine decay (Loshchilov & Hutter, 2017) without restarts: peak * (1 + cos(pi t / T)) / 2."""
  return 0.5 * peak * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def train_classifier(
  module: nn.Module,
  images: np.ndarray,
  labels: np.ndarray,
  config: TrainConfig,
  log: Callable[[str], None] | None = None,
) -> tuple[Any, dict]:
  """Trains ``module`` on (images, labels); a pure function of its inputs and ``config.seed``.

  Minibatch AdamW (Loshchilov & Hutter, 2019) on the mean softmax cross
  entropy, step size `cosine_lr`, each epoch a fresh permutation, optional
  random-shift augmentation and dropout.

  Args:
    module: one of :data:`ARCHITECTURES` (``__call__(x, train) -> (logits, features)``).
    images: uint8 (N, H, W, C) in [0, 255] or float32 in [-1, 1].
    labels: int (N,) class ids.
    config: `TrainConfig`.
    log: optional callable receiving one line per tenth of the run.

  Returns:
    (params, stats) with stats = {"train_accuracy", "final_loss", "steps", "train_seconds"}.
  """
  images = np.asarray(images)
  labels = np.asarray(labels, np.int32)
  n = int(images.shape[0])
  steps_per_epoch = n // config.batch_size
  if steps_per_epoch < 1:
    raise JaxganError(f"{n} training examples are fewer than one batch of {config.batch_size}")
  total = steps_per_epoch * config.epochs
  init_key, shuffle_key, step_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
  params = _init_params(init_key, module=module, shape=tuple(images.shape[1:]))
  opt_state = _direction(config.weight_decay).init(params)
  static = dict(module=module, weight_decay=config.weight_decay, max_shift=config.max_shift)

  # A Python loop over one jitted step: XLA:CPU runs convolutions inside lax.scan far slower.
  start = time.perf_counter()
  loss = float("nan")
  for epoch in range(config.epochs):
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n))
    for i in range(steps_per_epoch):
      t = epoch * steps_per_epoch + i
      b = perm[i * config.batch_size : (i + 1) * config.batch_size]
      lr = np.float32(cosine_lr(config.lr, t, total))
      params, opt_state, loss = _train_step(
        params, opt_state, images[b], labels[b], jax.random.fold_in(step_key, t), lr, **static
      )
    if log is not None and (epoch + 1) % max(1, config.epochs // 10) == 0:
      log(f"epoch {epoch + 1}/{config.epochs}: loss {float(loss):.4f}")
  params = jax.block_until_ready(params)
  seconds = time.perf_counter() - start
  logits_fn, _ = make_apply_fns(module, params)
  train_acc = float(np.mean(predict(logits_fn, images) == labels))
  return params, {"train_accuracy": train_acc, "final_loss": float(loss), "steps": total, "train_seconds": seconds}


# --------------------------------------------------------------------------
# Saving and loading.


def params_digest(params: Any) -> str:
  """A short SHA-256 of every parameter's path, shape and bytes (names the feature space)."""
  h = hashlib.sha256()
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    x = np.asarray(x)
    h.update(f"{jax.tree_util.keystr(path)}:{x.shape}:{x.dtype}".encode())
    h.update(x.tobytes())
  return h.hexdigest()[:16]


def train_command(dataset: str, workdir: str, image_size: int | None = None) -> str:
  """The command that trains the classifier a run expects in ``workdir`` (``--image_size`` when resized)."""
  size = f" --image_size={image_size}" if image_size else ""
  return f"python experiments/train_classifier.py --dataset={dataset}{size} --workdir={workdir}"


def save_classifier(workdir: str, params: Any, info: dict) -> dict:
  """Writes ``params`` (orbax) and ``classifier.json`` (``info`` + digest) to ``workdir``.

  ``info`` must hold ``arch``, ``arch_config``, ``dataset``, ``image_shape``
  and ``num_classes``. Returns the JSON written.
  """
  for key in ("arch", "arch_config", "dataset", "image_shape", "num_classes"):
    if key not in info:
      raise ValueError(f"classifier info needs {key!r}")
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(workdir, PARAMS_DIR), params, force=True)
  checkpointer.wait_until_finished()
  info = {
    "format": FORMAT,
    **info,
    "params_digest": params_digest(params),
    "param_count": int(sum(np.size(x) for x in jax.tree.leaves(params))),
  }
  tmp = os.path.join(workdir, INFO_FILE + ".tmp")
  with open(tmp, "w") as f:
    json.dump(info, f, indent=2, default=str)
  os.replace(tmp, os.path.join(workdir, INFO_FILE))
  return info


def read_classifier_info(workdir: str, dataset: str | None = None) -> dict:
  """The ``classifier.json`` of ``workdir``; `ClassifierNotFoundError` (with the command to run) if absent."""
  path = os.path.join(os.path.abspath(workdir), INFO_FILE)
  if not os.path.isfile(path) or not os.path.isdir(os.path.join(os.path.dirname(path), PARAMS_DIR)):
    raise ClassifierNotFoundError(
      f"no trained classifier in {os.path.abspath(workdir)} (missing {INFO_FILE} or {PARAMS_DIR}/): "
      f"train it first with `{train_command(dataset or '<dataset>', workdir)}`"
    )
  with open(path) as f:
    info = json.load(f)
  if info.get("format") != FORMAT or info.get("arch") not in ARCHITECTURES:
    raise ClassifierNotFoundError(
      f"{path} is not a jaxgan classifier (format {info.get('format')!r}, arch {info.get('arch')!r})"
    )
  return info


def build_module(info: dict) -> nn.Module:
  """The module described by a ``classifier.json``."""
  return ARCHITECTURES[info["arch"]](num_classes=info["num_classes"], **info["arch_config"])


def restore_params(workdir: str, info: dict | None = None) -> tuple[nn.Module, Any, dict]:
  """(module, params, info) of the classifier saved in ``workdir``."""
  info = read_classifier_info(workdir) if info is None else info
  module = build_module(info)
  example = jnp.zeros((1, *info["image_shape"]), jnp.float32)
  abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), example, train=False)["params"])
  path = os.path.join(os.path.abspath(workdir), PARAMS_DIR)
  try:
    params = ocp.StandardCheckpointer().restore(path, abstract)
  except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is one clear error
    raise ClassifierNotFoundError(
      f"cannot read the classifier parameters in {path}: {str(e).splitlines()[0][:200]}"
    ) from e
  if params_digest(params) != info.get("params_digest"):
    raise ClassifierNotFoundError(
      f"the parameters in {path} do not match {INFO_FILE} (digest differs): retrain the classifier"
    )
  return module, params, info


def load_classifier(workdir: str, dataset: str | None = None) -> tuple[LogitsFn, LogitsFn]:
  """Jitted ``(logits_fn, features_fn)`` of the classifier saved in ``workdir``.

  Both take images in [-1, 1] (or uint8) shaped (N, H, W, C) and return
  (N, num_classes) logits and (N, D) penultimate-layer features.
  ``dataset`` only names the dataset in the error raised when ``workdir`` has
  no classifier.
  """
  info = read_classifier_info(workdir, dataset)
  module, params, _ = restore_params(workdir, info)
  return make_apply_fns(module, params)


def make_apply_fns(module: nn.Module, params: Any) -> tuple[LogitsFn, LogitsFn]:
  """(logits_fn, features_fn) of ``module`` with ``params``.

  One compiled function per (architecture, input shape), shared by every
  classifier of that architecture: ``params`` is a jit argument, not a constant.
  """
  return (
    functools.partial(_apply, params, module=module, output=0),
    functools.partial(_apply, params, module=module, output=1),
  )


@functools.partial(jax.jit, static_argnames=("module", "output"))
def _apply(params: Any, x: jax.Array, *, module: nn.Module, output: int) -> jax.Array:
  return module.apply({"params": params}, _to_unit_range(x), train=False)[output]


class ClassifierFeatures:
  """`FeatureExtractor` of a trained classifier's penultimate layer (Fréchet classifier distance).

  ``name`` is ``classifier/<arch>/<dataset>/<params digest>``, so statistics
  from different classifiers are never compared.
  """

  def __init__(self, workdir: str, dataset: str | None = None):
    self.info = read_classifier_info(workdir, dataset)
    self.logits_fn, self._features = load_classifier(workdir, dataset)
    self.name = f"classifier/{self.info['arch']}/{self.info['dataset']}/{self.info['params_digest']}"

  def __call__(self, images: jax.Array) -> jax.Array:
    return self._features(images)


# --------------------------------------------------------------------------
# Evaluation.


def predict(logits_fn: LogitsFn, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
  """argmax class of every image, in fixed-size (zero-padded) batches so ``logits_fn`` compiles once."""
  images = np.asarray(images)
  out = []
  for start in range(0, len(images), batch_size):
    chunk = images[start : start + batch_size]
    valid = len(chunk)
    if valid < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - valid,) + chunk.shape[1:], chunk.dtype)])
    out.append(np.asarray(jnp.argmax(logits_fn(jnp.asarray(chunk)), axis=-1))[:valid])
  return np.concatenate(out) if out else np.zeros((0,), np.int64)


def confident_fraction(logits_fn: LogitsFn, images: np.ndarray, threshold: float = 0.9, batch_size: int = 500) -> float:
  """Share of images whose top class probability exceeds ``threshold``:
  (1/N) sum_i 1[max_k softmax(f(x_i))_k > threshold], in fixed-size batches."""
  images = np.asarray(images)
  hits = 0
  for start in range(0, len(images), batch_size):
    chunk = images[start : start + batch_size]
    valid = len(chunk)
    if valid < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - valid,) + chunk.shape[1:], chunk.dtype)])
    top = np.asarray(jnp.max(jax.nn.softmax(logits_fn(jnp.asarray(chunk)), axis=-1), axis=-1))[:valid]
    hits += int(np.sum(top > threshold))
  return hits / max(len(images), 1)


def label_accuracy(
  logits_fn: LogitsFn, images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int = 500
) -> dict:
  """How often the classifier's prediction equals the requested label.

  accuracy = (1/N) sum_i 1[argmax_k f(x_i)_k = y_i], plus the per-class
  accuracy and the confusion matrix C[y, k] = #{i : y_i = y, prediction k}.
  """
  labels = np.asarray(labels)
  pred = predict(logits_fn, images, batch_size)
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (labels, pred), 1)
  per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
  return {
    "accuracy": float(np.mean(pred == labels)),
    "num_samples": int(len(labels)),
    "per_class_accuracy": [float(a) for a in per_class],
    "confusion": confusion.tolist(),
  }


def class_coverage(predictions: np.ndarray, num_classes: int, min_count: int = 1) -> dict:
  """Mode counting with a classifier.

  Given predicted classes of N samples with histogram q (normalised counts),
  returns the number of classes predicted at least ``min_count`` times and
  KL(q || u) = sum_k q_k log(q_k K) against the uniform u over K classes
  (0 for a perfectly balanced generator, log K for a single mode).
  """
  counts = np.bincount(np.asarray(predictions), minlength=num_classes).astype(np.float64)
  q = counts / max(counts.sum(), 1.0)
  nz = q > 0
  kl = float(np.sum(q[nz] * np.log(q[nz] * num_classes)))
  return {
    "classes_covered": int(np.sum(counts >= min_count)),
    "num_classes": num_classes,
    "counts": [int(c) for c in counts],
    "kl_to_uniform": kl,
  }


def intra_class_diversity(features: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
  """Mean pairwise feature distance within a class, averaged over the classes present.

  d = (1/|K'|) sum_{y in K'} mean_{i != j, y_i = y_j = y} ||phi(x_i) - phi(x_j)||_2.
  Compared with the same quantity on real images it exposes intra-class mode
  collapse (every sample of a class alike), which label accuracy cannot see.
  """
  features, labels = np.asarray(features, np.float64), np.asarray(labels)
  per_class = []
  for y in range(num_classes):
    f = features[labels == y]
    if len(f) < 2:
      continue
    sq = np.sum(f * f, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0)
    per_class.append(np.sqrt(d2).sum() / (len(f) * (len(f) - 1)))
  return float(np.mean(per_class)) if per_class else float("nan")
