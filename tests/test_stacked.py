"""Stacked MNIST: jaxgan.data.stacked (the data) and jaxgan.metrics.stacked (the mode count).

Offline: the vendored 8x8 digits, and TFDS mnist under ``tfds.testing.mock_data``.
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgan.data import images as di
from jaxgan.data import stacked
from jaxgan.metrics import classifier as clf
from jaxgan.metrics.stacked import STACKED_NUM_SAMPLES, stacked_mode_count
from jaxgan.recipes import images as eu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits():
  return di.make_source("digits")


@pytest.fixture(scope="module")
def digits_arrays(digits):
  examples = [digits[i] for i in range(len(digits))]
  return np.stack([e["image"] for e in examples]), np.array([e["label"] for e in examples])


def stacked_labels(source, base_labels):
  """Every label of a StackedSource, vectorised from its index maps."""
  a, b, c = base_labels[source.indices]
  return 100 * a + 10 * b + c


def to_unit(images):
  return images.astype(np.float32) / 127.5 - 1.0


def take(source, indices):
  examples = [source[int(i)] for i in indices]
  return np.stack([e["image"] for e in examples]), np.array([e["label"] for e in examples])


@pytest.fixture(scope="module")
def nn_logits_fn(digits_arrays):
  """A fake digits classifier: one-hot logits of the exact nearest training image (exact on the train split)."""
  images, labels = digits_arrays
  ref = jnp.asarray(to_unit(images).reshape(len(images), -1))
  onehot = jnp.asarray(np.eye(10, dtype=np.float32)[labels])

  def logits_fn(x):
    q = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)
    d = jnp.sum(q * q, 1)[:, None] - 2.0 * q @ ref.T + jnp.sum(ref * ref, 1)[None, :]
    return onehot[jnp.argmin(d, axis=1)]

  return logits_fn


# --- the data ---------------------------------------------------------------------


def test_channels_are_three_base_images_with_the_right_label(digits):
  source = stacked.StackedSource(digits, seed=3, length=50)
  assert source.images_shape == (8, 8, 3) and source.num_classes == 1000 and len(source) == 50
  for i in (0, 7, 49, -1):
    example = source[i]
    assert example["image"].dtype == np.uint8 and example["image"].shape == (8, 8, 3)
    base = [digits[int(j)] for j in source.indices[:, i]]
    for channel, b in enumerate(base):
      np.testing.assert_array_equal(example["image"][..., channel], b["image"][..., 0])
    a, b, c = (int(e["label"]) for e in base)
    assert example["label"] == 100 * a + 10 * b + c
    np.testing.assert_array_equal(source.channel_labels(example["label"]), [a, b, c])


def test_deterministic_by_seed_and_different_across_seeds(digits):
  one, again = stacked.StackedSource(digits, seed=5), stacked.StackedSource(digits, seed=5)
  other = stacked.StackedSource(digits, seed=6)
  np.testing.assert_array_equal(one.indices, again.indices)
  np.testing.assert_array_equal(take(one, range(20))[0], take(again, range(20))[0])
  assert np.mean(one.indices != other.indices) > 0.99
  assert not np.array_equal(take(one, range(20))[0], take(other, range(20))[0])
  # The three channels are drawn independently of each other.
  assert np.mean(one.indices[0] == one.indices[1]) < 0.01


def test_default_length_and_label_coverage(digits, digits_arrays):
  source = di.make_source("stacked_digits")
  assert isinstance(source, stacked.StackedSource) and source.name == "stacked_digits"
  assert len(source) == stacked.DEFAULT_MIN_LENGTH == 60_000
  # Every base image is used equally often in every channel (concatenated permutations).
  counts = np.stack([np.bincount(row, minlength=len(digits)) for row in source.indices])
  assert counts.min() == 60_000 // 1500 and counts.max() == 60_000 // 1500
  labels = stacked_labels(source, digits_arrays[1])
  np.testing.assert_array_equal(take(source, range(0, 60_000, 997))[1], labels[::997])
  modes = np.bincount(labels, minlength=1000)
  assert labels.min() == 0 and labels.max() == 999 and len(modes) == 1000
  assert modes.min() >= 20 and modes.max() <= 120  # all 1,000 modes, ~60 examples each
  # A base longer than the default keeps its own length; test maps to the base's test split.
  big = di.ArraySource("big", np.zeros((70_000, 2, 2), np.uint8), np.zeros(70_000, np.int64), 10)
  assert len(stacked.StackedSource(big)) == 70_000
  test = di.make_source("stacked_digits", split="test")
  assert len(test) == 60_000 and set(np.unique(test.indices)) == set(range(297))


def test_batch_iterator_resumes_and_shards(digits):
  source = stacked.StackedSource(digits, seed=0, length=400)
  it = di.make_iterator(source, batch_size=16, seed=1, shard_index=1, shard_count=2)
  next(it)
  state = it.get_state()
  second = next(it)
  resumed = di.make_iterator(source, batch_size=16, seed=1, shard_index=1, shard_count=2)
  resumed.set_state(state)
  again = next(resumed)
  it.close(), resumed.close()
  assert second["image"].shape == (16, 8, 8, 3) and second["label"].dtype == np.int32
  np.testing.assert_array_equal(second["image"], again["image"])
  np.testing.assert_array_equal(second["label"], again["label"])
  assert 0 <= second["label"].min() and second["label"].max() < 1000


def test_image_size_and_channel_options():
  source = di.make_source("stacked_digits", image_size=16)
  assert source.images_shape == source[0]["image"].shape == (16, 16, 3)
  with pytest.raises(di.DataError, match="channels=1 was requested"):
    di.make_source("stacked_digits", channels=1)


# --- TFDS mnist, mocked -----------------------------------------------------------


def test_stacked_mnist_on_mocked_tfds(tmp_path):
  with tfds.testing.mock_data(num_examples=12):
    base = di.make_source("mnist", data_dir=str(tmp_path))
    source = di.make_source("stacked_mnist", data_dir=str(tmp_path))
    assert source.images_shape == (28, 28, 3) and source.num_classes == 1000 and len(source) == 60_000
    example = source[123]
    for channel, j in enumerate(source.indices[:, 123]):
      np.testing.assert_array_equal(example["image"][..., channel], base[int(j)]["image"][..., 0])
    resized = di.make_source("stacked_mnist", data_dir=str(tmp_path), image_size=32)
    assert resized[0]["image"].shape == (32, 32, 3)
    assert di.make_source("stacked_mnist", split="test", data_dir=str(tmp_path)).images_shape == (28, 28, 3)
    batch = next(di.make_iterator(source, batch_size=4, seed=0, n_critic=2))
    assert batch["image"].shape == (2, 4, 28, 28, 3) and batch["label"].max() < 1000
    # The experiments open it with the flags of experiments/flags/dcgan_stacked_mnist.flags.
    with open(os.path.join(ROOT, "experiments", "flags", "dcgan_stacked_mnist.flags")) as f:
      flags = dict(line.strip()[2:].split("=", 1) for line in f if line.startswith("--"))
    cfg = {
      "dataset": flags["dataset"],
      "data_dir": str(tmp_path),
      "split": "train",
      "image_size": int(flags["image_size"]),
      "channels": int(flags["channels"]),
      "convert_data": False,
    }
    _, model_shape = eu.open_dataset(cfg)
    assert model_shape == (28, 28, 3)
    with pytest.raises(di.DataError, match=r"^stacked_cifar10: .*3-channel images; stacking needs grayscale"):
      di.make_source("stacked_cifar10", data_dir=str(tmp_path))


def test_stacked_mnist_not_prepared_is_one_line(tmp_path):
  with pytest.raises(di.DatasetNotPreparedError) as info:
    di.make_source("stacked_mnist", data_dir=str(tmp_path))
  message = str(info.value)
  assert "\n" not in message
  assert message.startswith("stacked_mnist: cannot open the base dataset 'mnist'") and "tfds build mnist" in message


def test_bad_bases_are_one_data_error_line():
  with pytest.raises(di.DataError) as info:
    di.make_source("stacked_no_such_base")
  assert "\n" not in str(info.value) and str(info.value).startswith(
    "stacked_no_such_base: cannot open the base dataset 'no_such_base': unknown dataset"
  )
  rgb = di.ArraySource("rgb", np.zeros((4, 8, 8, 3), np.uint8), np.arange(4))
  with pytest.raises(di.DataError, match=r"^stacked_rgb: .* 3-channel images; stacking needs grayscale"):
    stacked.StackedSource(rgb)
  unlabelled = di.ArraySource("gray", np.zeros((4, 8, 8), np.uint8))
  with pytest.raises(di.DataError, match="has no labels"):
    stacked.StackedSource(unlabelled)
  with pytest.raises(di.DataError, match="length must be >= 1"):
    stacked.StackedSource(di.make_source("digits"), length=0)
  with pytest.raises(di.DataError, match="itself stacked"):
    di.make_source("stacked_stacked_digits")


# --- the mode count -----------------------------------------------------------------


def test_mode_count_on_real_stacked_samples(nn_logits_fn, digits_arrays):
  source = di.make_source("stacked_digits")
  order = np.random.default_rng(0).permutation(len(source))[:STACKED_NUM_SAMPLES]
  images, labels = take(source, order)
  result = stacked_mode_count(nn_logits_fn, to_unit(images))
  assert result["num_samples"] == STACKED_NUM_SAMPLES == 26_000 and result["num_modes"] == 1000
  # The fake classifier is exact on these images, so the count is the labels' own histogram.
  counts = np.bincount(labels, minlength=1000)
  p = counts[counts > 0] / len(labels)
  assert result["modes"] == np.count_nonzero(counts) == 1000
  assert result["kl_to_uniform"] == pytest.approx(float(np.sum(p * np.log(1000 * p))), rel=1e-9)
  assert result["kl_to_uniform"] < 0.05
  # A subset, with a batch size that leaves a padded last batch.
  few = stacked_mode_count(nn_logits_fn, to_unit(images[:700]), batch_size=128)
  assert few["num_samples"] == 700 and few["modes"] == len(np.unique(labels[:700])) > 450


def test_mode_count_of_one_repeated_image(nn_logits_fn):
  image = di.make_source("stacked_digits")[11]["image"]
  result = stacked_mode_count(nn_logits_fn, np.repeat(to_unit(image)[None], 1000, axis=0))
  assert result["modes"] == 1 and result["num_samples"] == 1000
  assert result["kl_to_uniform"] == pytest.approx(np.log(1000), abs=1e-9)


def test_mode_count_rejects_bad_input(nn_logits_fn):
  with pytest.raises(di.DataError, match=r"\(N, H, W, 3\), got shape \(4, 8, 8, 1\)"):
    stacked_mode_count(nn_logits_fn, np.zeros((4, 8, 8, 1), np.float32))
  with pytest.raises(di.DataError, match=r"got shape \(0, 8, 8, 3\)"):
    stacked_mode_count(nn_logits_fn, np.zeros((0, 8, 8, 3), np.float32))
  source = di.make_source("stacked_digits")
  many = to_unit(np.stack([source[i]["image"] for i in range(200)]))
  with pytest.raises(di.DataError, match=r"predicts class \d but num_classes=5"):
    stacked_mode_count(nn_logits_fn, many, num_classes=5)


def test_mode_count_with_a_trained_digits_classifier(digits_arrays):
  images, labels = digits_arrays
  module = clf.DigitsCNN(num_classes=10)
  params, _ = clf.train_classifier(module, images, labels, clf.TrainConfig(epochs=4, max_shift=1, seed=0))
  logits_fn, _ = clf.make_apply_fns(module, params)
  source = di.make_source("stacked_digits", split="test")
  real, _ = take(source, range(5000))
  result = stacked_mode_count(logits_fn, to_unit(real))
  assert result["modes"] > 900 and result["kl_to_uniform"] < 0.5, result
  assert stacked_mode_count(logits_fn, real) == result  # uint8 images: the classifier maps them to [-1, 1]
  collapsed = stacked_mode_count(logits_fn, np.repeat(real[:1], 500, axis=0))
  assert collapsed["modes"] == 1 and collapsed["kl_to_uniform"] == pytest.approx(np.log(1000))
