"""Tests for jaxgan.data.images (offline: TFDS datasets are mocked)."""

import json

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxgan.data import images as di


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def indexed_source(n, shape=(2, 2)):
  """An in-memory source whose label is the example index."""
  imgs = (np.arange(n, dtype=np.int64)[:, None, None] % 256 * np.ones(shape)).astype(np.uint8)
  return di.ArraySource("indexed", imgs, np.arange(n), num_classes=n)


# --- TFDS (mocked) -------------------------------------------------------------


@pytest.mark.parametrize(
  "name, shape, labelled",
  [
    ("mnist", (28, 28, 1), True),
    ("fashion_mnist", (28, 28, 1), True),
    ("cifar10", (32, 32, 3), True),
    ("svhn_cropped", (32, 32, 3), True),
    ("celeb_a", (64, 64, 3), False),
  ],
)
def test_tfds_presets(tmp_path, name, shape, labelled):
  with tfds.testing.mock_data(num_examples=12):
    source = di.make_source(name, data_dir=str(tmp_path))
    assert source.images_shape == shape and len(source) == 12
    assert (source.num_classes is not None) == labelled
    batch = next(di.make_iterator(source, batch_size=3, seed=0, n_critic=2))
  assert batch["image"].shape == (2, 3) + shape
  assert batch["image"].dtype == np.float32
  assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
  assert ("label" in batch) == labelled
  if labelled:
    assert batch["label"].shape == (2, 3) and batch["label"].dtype == np.int32


def test_tfds_resize_and_channels(tmp_path):
  with tfds.testing.mock_data(num_examples=4):
    source = di.make_source("mnist", data_dir=str(tmp_path), image_size=32, channels=3, convert_channels=True)
    image = source[0]["image"]
    assert source.images_shape == image.shape == (32, 32, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    gray = di.make_source("cifar10", data_dir=str(tmp_path), channels=1, convert_channels=True)
    assert gray[0]["image"].shape == (32, 32, 1)


def test_tfds_not_prepared(tmp_path):
  with pytest.raises(di.DatasetNotPreparedError, match=r"'mnist' is not prepared at .*tfds build mnist --data_dir="):
    di.make_source("mnist", data_dir=str(tmp_path))


def test_unknown_name(tmp_path):
  with pytest.raises(ValueError, match=r"unknown dataset 'no_such_dataset'.*mnist.*any TFDS"):
    di.make_source("no_such_dataset", data_dir=str(tmp_path))


def test_tfds_without_images(tmp_path):
  with pytest.raises(di.DataError, match="no uint8 'image' feature"):
    di.make_source("imdb_reviews", data_dir=str(tmp_path))


# --- digits, transforms, channel errors ---------------------------------------


def test_digits_offline():
  train, test = di.make_source("digits"), di.make_source("digits", split="test")
  assert (len(train), len(test)) == (1500, 297)
  assert train.images_shape == (8, 8, 1) and train.num_classes == 10
  example = train[0]
  assert example["image"].dtype == np.uint8 and example["label"].dtype == np.int32
  batch = next(di.make_iterator(train, batch_size=64, seed=0))
  assert batch["image"].shape == (64, 8, 8, 1) and batch["label"].shape == (64,)
  assert batch["image"].min() == -1.0 and batch["image"].max() == 1.0
  with pytest.raises(di.DataError, match="split"):
    di.make_source("digits", split="validation")


def test_channel_mismatch_needs_convert():
  with pytest.raises(di.DataError, match=r"1 channel\(s\) but channels=3.*convert_channels=True"):
    di.make_source("digits", channels=3)
  rgb = di.make_source("digits", channels=3, convert_channels=True)
  assert rgb.images_shape == (8, 8, 3)
  with pytest.raises(di.DataError, match="only 1 or 3 channels"):
    di.make_source("digits", channels=4, convert_channels=True)


def test_scaling_and_center_crop():
  image = np.arange(218 * 178 * 3, dtype=np.int64).reshape(218, 178, 3).astype(np.uint8)
  source = di.ArraySource("celeb-like", image[None], crop=108)
  assert source.images_shape == (108, 108, 3)
  np.testing.assert_array_equal(source[0]["image"], image[55:163, 35:143])
  extremes = di.ArraySource("x", np.array([[[0, 255]]], np.uint8))
  batch = next(di.make_iterator(extremes, batch_size=1, seed=0))
  np.testing.assert_array_equal(batch["image"].ravel(), [-1.0, 1.0])


# --- iterator: order, epochs, state, shards -----------------------------------


def test_deterministic_order():
  source = di.make_source("digits")
  a = [b["label"] for b in take(di.make_iterator(source, 32, seed=7), 4)]
  b = [b["label"] for b in take(di.make_iterator(source, 32, seed=7), 4)]
  c = [b["label"] for b in take(di.make_iterator(source, 32, seed=8), 4)]
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_epochs_reshuffled_and_drop_remainder():
  it = di.make_iterator(indexed_source(10), batch_size=4, seed=0, num_epochs=2)
  assert it.steps_per_epoch == 2
  epochs = [np.concatenate([b["label"] for b in take(it, 2)]) for _ in range(2)]
  for labels in epochs:  # Each epoch: 8 distinct examples, 2 dropped.
    assert len(set(labels.tolist())) == 8
  assert not np.array_equal(epochs[0], epochs[1])
  with pytest.raises(StopIteration):
    next(it)


def test_state_restore_continues_exactly():
  source = di.make_source("digits")
  it = di.make_iterator(source, 16, seed=3, n_critic=2)
  take(it, 5)
  state = json.loads(json.dumps(it.get_state()))
  expected = take(it, 3)
  resumed = di.make_iterator(source, 16, seed=3, n_critic=2)
  resumed.set_state(state)
  for got, want in zip(take(resumed, 3), expected):
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])
  assert resumed.step == 8
  with pytest.raises(di.DataError, match="seed"):
    di.make_iterator(source, 16, seed=4, n_critic=2).set_state(state)


@pytest.mark.parametrize("n", [40, 41])
def test_shards_disjoint_and_cover(n):
  source = indexed_source(n)
  seen = []
  for index in range(2):
    it = di.make_iterator(source, 4, seed=0, shard_index=index, shard_count=2, num_epochs=1)
    seen.append(np.concatenate([b["label"] for b in it]).tolist())
  assert len(seen[0]) == len(seen[1]) == 20
  assert not set(seen[0]) & set(seen[1])
  assert set(seen[0]) | set(seen[1]) == set(range(40))


def test_batch_larger_than_data():
  with pytest.raises(di.DataError, match="fewer than one batch"):
    di.make_iterator(indexed_source(5), batch_size=8, seed=0)


# --- file sources --------------------------------------------------------------


def test_image_folder_with_classes(tmp_path):
  rng = np.random.default_rng(0)
  for cls, count in (("cat", 3), ("dog", 2)):
    (tmp_path / cls).mkdir()
    for i in range(count):
      Image.fromarray(rng.integers(0, 256, (6, 5), np.uint8)).save(tmp_path / cls / f"{i}.png")
  source = di.make_source(str(tmp_path))
  assert len(source) == 5 and source.num_classes == 2 and source.images_shape == (6, 5, 1)
  assert source.class_names == ["cat", "dog"]
  assert [source[i]["label"] for i in range(5)] == [0, 0, 0, 1, 1]
  batch = next(di.make_iterator(source, 5, seed=0))
  assert batch["image"].shape == (5, 6, 5, 1)
  resized = di.make_source(str(tmp_path), image_size=4, channels=3, convert_channels=True)
  assert resized[0]["image"].shape == (4, 4, 3)


def test_image_folder_flat_rgb(tmp_path):
  for i in range(3):
    Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / f"{i}.jpg")
  source = di.make_source(str(tmp_path))
  assert source.num_classes is None and source.images_shape == (4, 4, 3)
  assert "label" not in source[0]


def test_image_folder_errors(tmp_path):
  with pytest.raises(di.DataError, match="has no .*images"):
    di.make_source(str(tmp_path))
  Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
  Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "b.png")
  with pytest.raises(di.MixedImageSizesError, match="mixes image sizes: a.png is 4x4 but b.png is 4x5") as error:
    di.make_source(str(tmp_path))
  assert "\n" not in str(error.value) and "pass --image_size=N" in str(error.value)


def _mixed_size_folder(folder):
  """Four images of four sizes whose 4x4 resizes are known: constant squares, and a 6x12 whose center is 100."""
  folder.mkdir(exist_ok=True)
  Image.fromarray(np.full((4, 4), 10, np.uint8)).save(folder / "a_native.png")
  Image.fromarray(np.full((2, 2), 50, np.uint8)).save(folder / "b_up.png")
  Image.fromarray(np.full((8, 8, 3), (200, 0, 0), np.uint8)).save(folder / "c_down_rgb.png")
  wide = np.full((6, 12), 100, np.uint8)
  wide[:, :3], wide[:, 9:] = 0, 255  # cut by the center crop to 6x6
  Image.fromarray(wide).save(folder / "d_wide.png")
  return folder


def test_image_folder_of_mixed_sizes_resized_to_image_size(tmp_path):
  folder = _mixed_size_folder(tmp_path / "mixed")
  source = di.make_source(str(folder), image_size=4)
  assert source.images_shape == (4, 4, 3) and len(source) == 4  # one RGB file: all read as RGB
  images = np.stack([source[i]["image"] for i in range(4)])
  assert images.shape == (4, 4, 4, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(images[0], np.full((4, 4, 3), 10))
  np.testing.assert_array_equal(images[1], np.full((4, 4, 3), 50))
  np.testing.assert_array_equal(images[2], np.broadcast_to(np.array([200, 0, 0], np.uint8), (4, 4, 3)))
  np.testing.assert_array_equal(images[3], np.full((4, 4, 3), 100))  # center crop, not a squeeze of the 12 columns
  gray = di.make_source(str(folder), image_size=4, channels=1, convert_channels=True)
  assert gray.images_shape == (4, 4, 1) and gray[0]["image"].shape == (4, 4, 1)
  batch = next(di.make_iterator(source, 4, seed=0))
  assert batch["image"].shape == (4, 4, 4, 3)


# --- .npz sources ----------------------------------------------------------------


@pytest.mark.parametrize(
  "values, expected",
  [
    ([0.0, 1 / 255, 0.25, 0.5, 1.0], [0, 1, 64, 128, 255]),  # [0, 1]: round(255 x)
    ([-1.0, -0.5, 0.0, 0.5, 1.0], [0, 64, 128, 191, 255]),  # any negative: [-1, 1], round(127.5 (x + 1))
  ],
  ids=["zero_one", "minus_one_one"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_float_npz_images_read_as_uint8(tmp_path, values, expected, dtype):
  path = str(tmp_path / "f.npz")
  np.savez(path, images=np.array(values, dtype).reshape(5, 1, 1), labels=np.arange(5) % 2)
  source = di.make_source(path)
  assert source.images_shape == (1, 1, 1) and source.num_classes == 2
  assert [int(source[i]["image"][0, 0, 0]) for i in range(5)] == expected


@pytest.mark.parametrize(
  "values, found",
  [
    ([0.0, 1.5], "has values in [0, 1.5]"),
    ([-1.25, 0.5], "has values in [-1.25, 0.5]"),
    ([0.0, 255.0], "has values in [0, 255]"),
    ([0.5, np.nan], "holds NaN"),
    ([0.5, np.inf], "holds Inf"),
  ],
)
def test_float_npz_out_of_range_is_one_error(tmp_path, values, found):
  path = str(tmp_path / "bad.npz")
  np.savez(path, images=np.array(values, np.float32).reshape(2, 1, 1))
  with pytest.raises(di.DataError) as error:
    di.make_source(path)
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(f"npz file {path}: float array 'images' {found}")
  assert message.endswith("[0, 1] (read as uint8 round(255 x)) or [-1, 1] (read as round(127.5 (x + 1)))")


def test_npz_source(tmp_path):
  path = str(tmp_path / "d.npz")
  np.savez(path, images=np.zeros((6, 3, 3), np.uint8), labels=np.arange(6) % 3)
  source = di.make_source(path)
  assert len(source) == 6 and source.images_shape == (3, 3, 1) and source.num_classes == 3
  assert next(di.make_iterator(source, 2, seed=0))["label"].shape == (2,)
  np.savez(path, images=np.zeros((6, 3, 3), np.int64))
  with pytest.raises(di.DataError, match="must be uint8"):
    di.make_source(path)
  with pytest.raises(di.DataError, match="single split"):
    di.make_source(path, split="test")


# --- device prefetch -----------------------------------------------------------


def test_prefetch_to_device_matches_and_resumes():
  source = di.make_source("digits")
  mesh = jax.make_mesh((1,), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  plain = take(di.make_iterator(source, 8, seed=1), 6)
  pf = di.prefetch_to_device(di.make_iterator(source, 8, seed=1), size=2, sharding=sharding)
  first = take(pf, 3)
  state = pf.get_state()
  assert state["step"] == 3
  for got, want in zip(first, plain):
    assert isinstance(got["image"], jax.Array) and got["image"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(got["image"]), want["image"])
  resumed = di.prefetch_to_device(di.make_iterator(source, 8, seed=1), size=2)
  resumed.set_state(state)
  for got, want in zip(take(resumed, 3), plain[3:]):
    np.testing.assert_array_equal(np.asarray(got["label"]), want["label"])
