"""Tests for Pix2Pix / CycleGAN: models, image pool, jitter, schedule, steps, data.

Networks run in their tiny variants; the full-size ones are only traced with
`jax.eval_shape` (shapes and parameter counts, no compilation).
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxgan import augment, optimizers, parallel
from jaxgan.data import paired
from jaxgan.data.images import DataError
from jaxgan.errors import ConfigError
from jaxgan.families import cyclegan, pix2pix
from jaxgan.models.cyclegan import CycleGANDiscriminator, ResNetGenerator
from jaxgan.models.pix2pix import PatchGANDiscriminator, UNetGenerator, patchgan_layer_spec, receptive_field
from jaxgan.state import param_count

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = jax.random.PRNGKey(0)


def _init(model, x):
  """Variables of ``model`` for inputs shaped like ``x`` (jitted: one compile, not one per op)."""
  rngs = {"params": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}
  return jax.jit(lambda r, inp: model.init(r, inp, train=False))(rngs, x)


def _abstract_init(model, shape):
  return jax.eval_shape(lambda: _init(model, jnp.zeros(shape)))


# --------------------------------------------------------------------------
# U-Net


def test_unet_full_size_shapes_and_paper_channel_counts():
  model = UNetGenerator()
  variables = _abstract_init(model, (1, 256, 256, 3))
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 256, 256, 3)), train=False), variables)
  assert out.shape == (1, 256, 256, 3)
  p = variables["params"]
  encoder = [p[f"down{i}"]["kernel"].shape[-1] for i in range(1, 9)]
  assert encoder == [64, 128, 256, 512, 512, 512, 512, 512]
  # Decoder inputs: U-Net concatenation doubles them (CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128).
  decoder_in = [p[f"up{j}"]["kernel"].shape[2] for j in range(1, 8)] + [p["out"]["kernel"].shape[2]]
  assert decoder_in == [512, 1024, 1024, 1024, 1024, 512, 256, 128]
  assert [p[f"up{j}"]["kernel"].shape[-1] for j in range(1, 8)] == [512, 512, 512, 512, 256, 128, 64]
  assert "down1_norm" not in p and "down2_norm" in p  # no BatchNorm on the first block
  assert param_count(p) == 54_415_043


def test_unet_tiny_256_output_shape_and_skip_connections_used():
  model = UNetGenerator.tiny(channels=3)
  x = jax.random.uniform(KEY, (1, 256, 256, 3), minval=-1, maxval=1)
  variables = _init(model, x)
  apply = jax.jit(lambda v: model.apply(v, x, train=False))
  out = apply(variables)
  assert out.shape == x.shape and float(jnp.max(jnp.abs(out))) <= 1.0
  p = variables["params"]
  # The last layer sees [d_7, e_1]: zeroing the weights that read the skip e_1 changes the output.
  kernel = p["out"]["kernel"]
  skip_channels = p["down1"]["kernel"].shape[-1]
  assert kernel.shape[2] == p["up7"]["kernel"].shape[-1] + skip_channels
  cut = jax.tree.map(lambda a: a, variables)
  cut["params"]["out"]["kernel"] = kernel.at[:, :, -skip_channels:, :].set(0.0)
  assert float(jnp.max(jnp.abs(apply(cut) - out))) > 1e-4
  plain = _abstract_init(UNetGenerator.tiny(channels=3, skip_connections=False), (1, 256, 256, 3))
  assert plain["params"]["out"]["kernel"].shape[2] == p["up7"]["kernel"].shape[-1]


def test_unet_depth_adapts_and_dropout_is_train_noise():
  model = UNetGenerator.tiny(channels=1)
  assert model.depth(32, 32) == 5 and model.depth(64, 64) == 6 and model.depth(256, 256) == 8
  with pytest.raises(ValueError, match="cannot be halved"):
    model.depth(24, 24)
  x = jax.random.uniform(KEY, (2, 32, 32, 1), minval=-1, maxval=1)
  variables = _init(model, x)

  @jax.jit
  def outputs(key):
    train, _ = model.apply(variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])
    return train, model.apply(variables, x, train=False, rngs={"dropout": key})

  (t1, e1), (t2, e2) = outputs(jax.random.PRNGKey(3)), outputs(jax.random.PRNGKey(4))
  assert float(jnp.max(jnp.abs(t1 - t2))) > 1e-5
  np.testing.assert_array_equal(e1, e2)


# --------------------------------------------------------------------------
# PatchGAN


def test_patchgan_receptive_field_from_spec_and_output_size():
  assert receptive_field(patchgan_layer_spec(70)) == 70
  assert {n: receptive_field(patchgan_layer_spec(n)) for n in (1, 16, 286)} == {1: 1, 16: 16, 286: 286}
  assert receptive_field([(3, 1), (3, 1)]) == 5 and receptive_field([(2, 2), (2, 2)]) == 4
  model = PatchGANDiscriminator()
  assert model.receptive_field == 70
  variables = _abstract_init(model, (1, 256, 256, 6))
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 256, 256, 6)), train=False), variables)
  assert out.shape == (1, 30, 30)
  assert [variables["params"][f"conv{i}"]["kernel"].shape[-1] for i in range(1, 5)] == [64, 128, 256, 512]
  cycle_d = CycleGANDiscriminator()
  cv = _abstract_init(cycle_d, (1, 256, 256, 3))
  assert jax.eval_shape(lambda v: cycle_d.apply(v, jnp.zeros((1, 256, 256, 3))), cv).shape == (1, 30, 30)


@pytest.mark.parametrize("patch, size", [(70, 128), (16, 32)])
def test_patchgan_empirical_receptive_field(patch, size):
  """The nonzero support of d logit / d input for one interior logit is exactly patch x patch."""
  model = PatchGANDiscriminator.tiny(patch_size=patch)
  x = jax.random.normal(KEY, (1, size, size, 2))
  variables = _init(model, x)
  i = jax.eval_shape(lambda inp: model.apply(variables, inp, train=False), x).shape[1] // 2
  grad = jax.jit(jax.grad(lambda inp: model.apply(variables, inp, train=False)[0, i, i]))(x)
  support = np.asarray(jnp.any(grad[0] != 0, axis=-1))
  rows, cols = np.nonzero(support)
  assert rows.max() - rows.min() + 1 == patch and cols.max() - cols.min() + 1 == patch
  assert support.sum() == patch * patch  # every pixel of the square matters
  assert rows.min() > 0 and rows.max() < size - 1  # interior: not clipped by the border


# --------------------------------------------------------------------------
# ResNet generator


def test_resnet_generator_full_size_and_tiny():
  for blocks, count in ((9, 11_378_179), (6, 7_837_699)):
    model = ResNetGenerator(num_blocks=blocks)
    variables = _abstract_init(model, (1, 256, 256, 3))
    assert param_count(variables["params"]) == count
    out = jax.eval_shape(lambda v, model=model: model.apply(v, jnp.zeros((1, 256, 256, 3))), variables)
    assert out.shape == (1, 256, 256, 3)
  model = ResNetGenerator.tiny(channels=1)
  x = jax.random.uniform(KEY, (2, 16, 16, 3), minval=-1, maxval=1)
  out = jax.jit(lambda v: model.apply(v, x))(_init(model, x))
  assert out.shape == (2, 16, 16, 1) and float(jnp.max(jnp.abs(out))) <= 1.0


# --------------------------------------------------------------------------
# Image pool, jitter, schedule


def test_image_pool_fills_then_mixes_new_and_stored_with_probability_half():
  size = 50
  pool = cyclegan.ImagePool.create(size, (1, 1, 1))
  query = jax.jit(cyclegan.image_pool_query)
  # Filling: every new image is stored and returned as is.
  first = jnp.arange(size, dtype=jnp.float32).reshape(size, 1, 1, 1)
  pool, out = query(pool, first, jax.random.PRNGKey(1))
  np.testing.assert_array_equal(out, first)
  assert int(pool.count) == size
  np.testing.assert_array_equal(np.sort(np.asarray(pool.images).ravel()), np.arange(size))
  # Full: many queries of unique values; a returned image is either the new one or a stored one.
  n = 4000
  new = jnp.arange(size, size + n, dtype=jnp.float32).reshape(n, 1, 1, 1)
  pool2, out = query(pool, new, jax.random.PRNGKey(2))
  out, new_v = np.asarray(out).ravel(), np.asarray(new).ravel()
  stored = out != new_v
  assert abs(stored.mean() - 0.5) < 0.04  # binomial sd 0.008
  assert np.all(out[stored] < new_v[stored])  # an image from the past ...
  assert len(np.unique(out[stored])) == stored.sum()  # ... each handed out once (it is replaced)
  assert int(pool2.count) == size
  # Deterministic given the key; the pool holds 50 distinct images it was fed.
  _, again = query(pool, new, jax.random.PRNGKey(2))
  np.testing.assert_array_equal(np.asarray(again).ravel(), out)
  held = np.asarray(pool2.images).ravel()
  assert len(np.unique(held)) == size and np.all(held < size + n)
  empty = cyclegan.ImagePool.create(0, (1, 1, 1))
  assert cyclegan.image_pool_query(empty, new, KEY)[1] is new


def test_random_jitter_pairs_share_crop_and_flip():
  x = jax.random.uniform(KEY, (6, 32, 32, 1))
  a, b = augment.jitter_pair(jax.random.PRNGKey(5), x, 2 * x, 36, True)
  assert a.shape == x.shape and b.shape == x.shape
  np.testing.assert_allclose(b, 2 * a, atol=1e-6)
  assert float(jnp.max(jnp.abs(a - x))) > 1e-3
  flipped = augment.random_jitter(jax.random.PRNGKey(6), x, 0, True)
  for got, orig in zip(np.asarray(flipped), np.asarray(x)):
    assert np.array_equal(got, orig) or np.array_equal(got, orig[:, ::-1])
  binary = jnp.sign(x - 0.5)
  crisp = augment.random_jitter(jax.random.PRNGKey(7), binary, 36, False, method="nearest")
  assert set(np.unique(np.asarray(crisp))) == {-1.0, 1.0}  # nearest keeps binary images binary
  assert augment.default_jitter_size(256) == 286 and augment.default_jitter_size(32) == 36
  with pytest.raises(ConfigError, match="unknown jitter method"):
    augment.Jitter(size=36, method="bicubic")


def test_constant_then_linear_decay_schedule():
  # The papers' rule: constant for num_updates - decay_updates updates, then linearly to 0.
  schedule = optimizers.learning_rate(2e-4, "linear_decay", num_updates=200, decay_updates=100)
  values = [float(schedule(t)) for t in (0, 50, 100, 125, 150, 200, 300)]
  np.testing.assert_allclose(values, [2e-4, 2e-4, 2e-4, 1.5e-4, 1e-4, 0.0, 0.0], atol=1e-12)
  assert optimizers.learning_rate(1e-3, "linear_decay", num_updates=10, decay_updates=0) == 1e-3
  # The fraction form (DCGAN-style decays): the last half of 200 updates.
  halfway = optimizers.learning_rate(2e-4, "linear_decay", num_updates=200, decay_start=0.5)
  np.testing.assert_allclose([float(halfway(t)) for t in (100, 150, 200)], [2e-4, 1e-4, 0.0], atol=1e-12)
  cosine = optimizers.learning_rate(1.0, "cosine", num_updates=100, decay_start=0.5)
  np.testing.assert_allclose([float(cosine(t)) for t in (0, 50, 75, 100)], [1.0, 1.0, 0.5, 0.0], atol=1e-6)


# --------------------------------------------------------------------------
# One real training step each


def _changed(before, after):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_pix2pix_train_step_tiny():
  a, b = paired.digit_edge_pairs("test", 16)
  batch = {"a": jnp.asarray(a[:4] / 127.5 - 1, jnp.float32), "b": jnp.asarray(b[:4] / 127.5 - 1, jnp.float32)}
  tx = optax.adam(2e-4, b1=0.5)
  config = pix2pix.Config(jitter=augment.Jitter(size=18, flip=True))
  state = pix2pix.init_state(
    config,
    seed=0,
    generator=UNetGenerator.tiny(channels=1),
    discriminator=PatchGANDiscriminator.tiny(patch_size=16),
    g_tx=tx,
    d_tx=tx,
    input_shape=(16, 16, 1),
    target_channels=1,
  )
  assert state.disc.params["conv1"]["kernel"].shape[2] == 2  # D sees [input, target]
  g0, d0 = jax.device_get((state.gen, state.disc))
  step = parallel.compile_step(lambda s, b: pix2pix.train_step(s, b, config))
  state, metrics = step(state, batch)
  assert int(state.step) == 1 and bool(metrics["finite"])
  assert _changed(g0.params, state.gen.params) and _changed(d0.params, state.disc.params)
  assert _changed(g0.batch_stats, state.gen.batch_stats)
  # g_loss = adversarial + 100 * L1; the L1 of an untrained net is large.
  np.testing.assert_allclose(metrics["g_loss"], metrics["g_adv_loss"] + 100 * metrics["g_l1"], rtol=1e-5)
  assert 0.2 < float(metrics["g_l1"]) < 2.0
  out = jax.jit(pix2pix.sample)(state, batch["a"])
  assert out.shape == batch["b"].shape


def test_cyclegan_train_step_tiny():
  x = jax.random.uniform(KEY, (2, 16, 16, 3), minval=-1, maxval=1)
  batch = {"a": x, "b": -x}
  tx = optax.adam(optimizers.learning_rate(2e-4, "linear_decay", num_updates=20, decay_updates=10), b1=0.5)
  gen, disc = ResNetGenerator.tiny(), CycleGANDiscriminator.tiny(patch_size=16)
  config = cyclegan.Config(jitter=augment.Jitter(size=18, flip=True))
  state = cyclegan.init_state(
    config,
    seed=0,
    generator_ab=gen,
    generator_ba=gen,
    discriminator_a=disc,
    discriminator_b=disc,
    g_tx=tx,
    d_tx=tx,
    shape_a=(16, 16, 3),
    shape_b=(16, 16, 3),
    pool_size=3,
  )
  before = jax.device_get(state)
  step = parallel.compile_step(lambda s, b: cyclegan.train_step(s, b, config))
  state, metrics = step(state, batch)
  assert int(state.step) == 1 and bool(metrics["finite"])
  for net in ("g_ab", "g_ba", "d_a", "d_b"):
    assert _changed(getattr(before, net).params, getattr(state, net).params), net
  assert int(state.pool_a.count) == 2 and int(state.pool_b.count) == 2
  total = (
    metrics["g_adv_ab"]
    + metrics["g_adv_ba"]
    + 10 * (metrics["cycle_a"] + metrics["cycle_b"])
    + 5 * (metrics["identity_a"] + metrics["identity_b"])
  )
  np.testing.assert_allclose(metrics["g_loss"], total, rtol=1e-5)
  assert jax.eval_shape(lambda st: cyclegan.sample(st, x, "BtoA"), state).shape == x.shape


# --------------------------------------------------------------------------
# Data


def test_digit_edge_pairs_deterministic_and_nontrivial():
  a, b = paired.digit_edge_pairs("test", 32)
  a2, b2 = paired.digit_edge_pairs("test", 32)
  np.testing.assert_array_equal(a, a2)
  np.testing.assert_array_equal(b, b2)
  assert a.shape == b.shape == (297, 32, 32, 1) and a.dtype == b.dtype == np.uint8
  assert set(np.unique(b)) == {0, 255}
  assert not np.any((a > 127) & (b > 0))  # the outline lies outside the stroke
  assert np.mean(np.abs(a / 127.5 - b / 127.5)) > 0.5
  train_a, train_b = paired.make_unpaired_sources(paired.DIGIT_EDGES, "train")
  assert len(train_a) == len(train_b) == 750


def test_paired_folder_source_and_iterator(tmp_path):
  rng = np.random.default_rng(0)
  for i in range(5):
    left = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    right = 255 - left
    Image.fromarray(np.concatenate([left, right], axis=1)).save(tmp_path / f"{i}.png")
  source = paired.make_paired_source(str(tmp_path), image_size=8)
  assert source.shape_a == source.shape_b == (8, 8, 3) and len(source) == 5
  swapped = paired.make_paired_source(str(tmp_path), image_size=8, direction="BtoA")
  np.testing.assert_array_equal(swapped.pair(2)[0], source.pair(2)[1])
  it = paired.PairedIterator(source, batch_size=2, seed=0)
  batch = next(it)
  np.testing.assert_allclose(batch["b"], -batch["a"], atol=1e-6)  # halves stay aligned through shuffling
  state = it.get_state()
  following = next(it)
  it.set_state(state)
  np.testing.assert_array_equal(next(it)["a"], following["a"])
  with pytest.raises(DataError, match="unknown paired dataset"):
    paired.make_paired_source(str(tmp_path / "nope"))


def test_paired_folder_of_mixed_sizes_and_float_npz(tmp_path):
  folder = tmp_path / "pairs"
  folder.mkdir()
  for name, (h, w), (left, right) in (("a", (8, 8), (10, 200)), ("b", (12, 12), (50, 100)), ("c", (4, 6), (30, 60))):
    Image.fromarray(np.concatenate([np.full((h, w), left, np.uint8), np.full((h, w), right, np.uint8)], 1)).save(
      folder / f"{name}.png"
    )
  source = paired.make_paired_source(str(folder), image_size=8)
  assert source.shape_a == source.shape_b == (8, 8, 1) and len(source) == 3
  for index, (left, right) in enumerate(((10, 200), (50, 100), (30, 60))):  # each half resized on its own
    a, b = source.pair(index)
    np.testing.assert_array_equal(a, np.full((8, 8, 1), left))
    np.testing.assert_array_equal(b, np.full((8, 8, 1), right))
  assert paired.make_paired_source(str(folder), image_size=8, channels=3).pair(0)[0].shape == (8, 8, 3)
  Image.fromarray(np.zeros((4, 7), np.uint8)).save(folder / "d.png")
  with pytest.raises(DataError, match=r"d.png is 4x7; side-by-side A\|B images need an even width"):
    paired.make_paired_source(str(folder), image_size=8)
  path = str(tmp_path / "pairs.npz")
  np.savez(
    path, a=np.array([-1.0, 0.0, 1.0], np.float32).reshape(3, 1, 1), b=np.array([0, 9, 255], np.uint8)[:, None, None]
  )
  source = paired.make_paired_source(path)
  assert [int(source.pair(i)[0][0, 0, 0]) for i in range(3)] == [0, 128, 255]
  assert [int(source.pair(i)[1][0, 0, 0]) for i in range(3)] == [0, 9, 255]
  np.savez(path, a=np.zeros((3, 1, 1), np.float32), b=np.full((3, 1, 1), 2.0))
  with pytest.raises(DataError, match=r"float array 'b' has values in \[2, 2\]"):
    paired.make_paired_source(path)


def test_unpaired_tfds_cycle_gan_mocked(tmp_path):
  with tfds.testing.mock_data(num_examples=6):
    source_a, source_b = paired.make_unpaired_sources(
      "cycle_gan/horse2zebra", "train", data_dir=str(tmp_path), image_size=16
    )
    assert source_a.images_shape == source_b.images_shape == (16, 16, 3)
    it = paired.UnpairedIterator(source_a, source_b, batch_size=2, seed=0)
    batch = next(it)
  assert set(batch) == {"a", "b"} and batch["a"].shape == (2, 16, 16, 3)
  assert not np.array_equal(batch["a"], batch["b"])


def test_experiment_bad_input_one_line_error(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  workdir, inputs = tmp_path / "work", tmp_path / "in"
  workdir.mkdir()
  inputs.mkdir()
  Image.fromarray(np.zeros((32, 32), np.uint8)).save(inputs / "x.png")
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "experiments", "pix2pix.py"),
      "--mode=translate",
      f"--workdir={workdir}",
      f"--input_dir={inputs}",
      f"--output_dir={tmp_path / 'out'}",
      "--dataset=digits_edges",
      "--image_size=32",
    ],
    capture_output=True,
    text=True,
    env=env,
    cwd=ROOT,
    timeout=120,
  )
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith("error: no checkpoint in")
  assert os.listdir(workdir) == [] and not (tmp_path / "out").exists()
