"""Conditional GANs: labelled train steps, uniform generator labels, per-class grids, the digits classifier.

(That every conditional G and D output depends on its labels is checked in
tests/test_models.py.)
"""

import functools
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from jaxgan import sampling
from jaxgan.data.images import DataError
from jaxgan.errors import ConfigError
from jaxgan.families import gan
from jaxgan.metrics import classifier as clf
from jaxgan.metrics.features import FeatureExtractor
from jaxgan.models import cgan
from jaxgan.recipes import conditional
from jaxgan.state import create_gan_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 3  # classes of the tiny models


def tiny_state(gen, disc, seed=0, latent_dim=8, ema=False):
  tx = optax.adam(1e-2, 0.5, 0.9)
  # Initialisation compiled as one program: much faster on CPU than running it op by op.
  return jax.jit(
    functools.partial(
      create_gan_state,
      seed=seed,
      generator=gen,
      discriminator=disc,
      g_tx=tx,
      d_tx=tx,
      latent_dim=latent_dim,
      data_shape=(8, 8, 1),
      num_classes=K,
      use_ema=ema,
    )
  )()


def changed(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# Every conditional generator and every conditional discriminator appears in one pair.
PAIRS = [
  ("cgan_mlp", "cgan_mlp"),
  ("cgan_embed", "cgan_maxout"),
  ("cgan_paper", "cgan_projection"),
  ("cgan_conv", "cgan_conv"),
]


@pytest.mark.parametrize("g_name,d_name", PAIRS)
def test_one_labelled_train_step_per_pair(g_name, d_name):
  gen, disc = cgan.GENERATORS[g_name].tiny(), cgan.DISCRIMINATORS[d_name].tiny()
  state = tiny_state(gen, disc, ema=True)
  config = gan.Config(n_critic=2, latent_dim=8, num_classes=K, ema_decay=0.9)
  rng = np.random.default_rng(0)
  batch = {
    "x": rng.uniform(-1, 1, (2, 6, 8, 8, 1)).astype(np.float32),
    "label": rng.integers(0, K, (2, 6)).astype(np.int32),
  }
  new, metrics = jax.jit(gan.train_step, static_argnums=2)(state, batch, config)
  assert int(new.step) == 1 and int(new.disc.step) == 2 and int(new.gen.step) == 1
  assert bool(metrics["finite"])
  assert changed(state.gen.params, new.gen.params) and changed(state.disc.params, new.disc.params)
  assert changed(state.ema_params, new.ema_params)


class _ProbeGenerator(nn.Module):
  @nn.compact
  def __call__(self, z, labels=None, *, train=True):
    return jnp.tanh(nn.Dense(64)(z)).reshape(z.shape[0], 8, 8, 1)


class _LabelProbe(nn.Module):
  """D(x, y) = 1[y == c] for a parameter c >= 0, else D(x, y) = y: g_update's mean D output reveals its labels."""

  @nn.compact
  def __call__(self, x, labels=None, *, train=True):
    c = self.param("c", nn.initializers.zeros, ())
    y = labels.astype(jnp.float32)
    return jnp.where(c >= 0, (y == c).astype(jnp.float32), y) + 0.0 * jnp.sum(x, axis=(1, 2, 3))


def test_g_update_draws_uniform_labels_with_its_own_key():
  k, n = 10, 4000
  config = gan.Config(latent_dim=8, num_classes=k)
  tx = optax.sgd(0.0)
  state = create_gan_state(
    seed=0,
    generator=_ProbeGenerator(),
    discriminator=_LabelProbe(),
    g_tx=tx,
    d_tx=tx,
    latent_dim=8,
    data_shape=(8, 8, 1),
    num_classes=k,
  )
  # The batch's own labels (all 0) must not be used by the generator step.
  batch = {"x": jnp.zeros((n, 8, 8, 1)), "label": jnp.zeros((n,), jnp.int32)}
  g_update = jax.jit(gan.g_update, static_argnums=3)

  def probe(c, key):
    st = state.replace(disc=state.disc.replace(params={"c": jnp.float32(c)}))
    return float(g_update(st, batch, key, config)[1]["g_fake_out"])

  key_a, key_b = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  mean_a, mean_b = probe(-1, key_a), probe(-1, key_b)
  assert mean_a != mean_b  # different keys, different labels
  assert abs(mean_a - (k - 1) / 2) < 0.15 and abs(mean_b - (k - 1) / 2) < 0.15
  freqs = np.array([probe(c, key_a) for c in range(k)])
  assert abs(freqs.sum() - 1.0) < 1e-5  # every label lies in [0, k)
  counts = freqs * n
  chi2 = float(np.sum((counts - n / k) ** 2 / (n / k)))
  assert chi2 < 27.9  # chi-square, 9 degrees of freedom, p = 0.001
  assert probe(-1, key_a) == mean_a  # same key, same labels


def test_class_grid_has_one_row_per_class(tmp_path):
  state = tiny_state(cgan.CGANMLPGenerator.tiny(), cgan.CGANMLPDiscriminator.tiny())
  config = gan.Config(latent_dim=8, num_classes=K)
  z, labels = sampling.class_grid_inputs(jax.random.PRNGKey(0), K, 4, config)
  assert np.array_equal(np.asarray(labels).reshape(K, 4), np.repeat(np.arange(K)[:, None], 4, 1))
  z = np.asarray(z).reshape(K, 4, -1)
  assert np.array_equal(z[0], z[1]) and np.array_equal(z[0], z[2])  # a fixed z per column
  images = conditional.class_grid(state, config, jax.random.PRNGKey(0), columns=4)
  assert images.shape == (K * 4, 8, 8, 1)
  assert not np.allclose(images[0], images[4])  # same z, different class
  path = conditional.save_class_grid(str(tmp_path / "grid.png"), images, K, scale=2)
  h, w = np.asarray(Image.open(path)).shape[:2]
  assert (h, w) == (2 * (K * 9 + 1), 2 * (4 * 9 + 1))  # 8 px images, 1 px padding


def test_sampling_state_measures_batchnorm_statistics_for_the_ema_parameters():
  state = tiny_state(cgan.CGANEmbedGenerator.tiny(), cgan.CGANMLPDiscriminator.tiny(), ema=True)
  config = gan.Config(latent_dim=8, num_classes=K, ema_decay=0.9)
  # EMA parameters that differ from the raw ones: the raw running statistics no longer fit them.
  ema = jax.tree.map(lambda p: 1.5 * p + 0.1, state.gen.params)
  state = state.replace(ema_params=ema)
  key = jax.random.PRNGKey(5)
  sampled = conditional.sampling_state(state, config, key, num_batches=3, batch_size=30)
  # Exact reference: the mean over the same batches of the batch statistics under the EMA parameters.
  labels = jnp.arange(30, dtype=jnp.int32) % K
  variables = {"params": ema, "batch_stats": state.gen.batch_stats}

  @jax.jit
  def reference(keys):
    def batch_mean(k):
      z = gan.sample_latent(k, 30, config)
      _, inter = state.gen.apply_fn(
        variables,
        z,
        labels,
        train=True,
        mutable=["batch_stats", "intermediates"],
        rngs={"dropout": jax.random.PRNGKey(0)},
        capture_intermediates=True,
      )
      return inter["intermediates"]["fc_z"]["__call__"][0].mean(axis=0)

    return jnp.mean(jnp.stack([batch_mean(k) for k in keys]), axis=0)

  np.testing.assert_allclose(
    sampled.gen.batch_stats["bn_z"]["mean"], reference(jax.random.split(key, 3)), rtol=1e-4, atol=1e-5
  )
  assert not np.allclose(sampled.gen.batch_stats["bn_z"]["mean"], state.gen.batch_stats["bn_z"]["mean"])
  plain = state.replace(ema_params=None)
  assert conditional.sampling_state(plain, config, key) is plain  # nothing to re-measure without EMA


@pytest.mark.parametrize(
  "name,shape",
  [
    ("cgan_digits", (8, 8, 1)),
    ("cgan_mnist", (28, 28, 1)),
    ("cgan_fashion_mnist", (28, 28, 1)),
    ("cgan_cifar10", (32, 32, 3)),
  ],
)
def test_flagfiles_build_models_of_the_right_shape(name, shape):
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import launch  # noqa: E402  (the entry points' flag-file reader: overlays name their base file)

  lines = launch.expand_flagfiles([f"--flagfile={os.path.join(ROOT, 'experiments', 'flags', name + '.flags')}"])
  flags = dict(line[2:].split("=", 1) for line in lines)
  assert flags["dataset"] == name[len("cgan_") :]
  g_overrides = {"dropout": float(flags["g_dropout"])} if "g_dropout" in flags else {}
  gen, disc = conditional.build_conditional_pair(
    flags["generator"], flags["discriminator"], shape, 10, g_overrides=g_overrides
  )
  z, y = jnp.zeros((2, int(flags.get("latent_dim", 100)))), jnp.array([0, 9])
  g_vars = jax.eval_shape(lambda: gen.init(jax.random.PRNGKey(0), z, y, train=False))
  out = jax.eval_shape(lambda v: gen.apply(v, z, y, train=False), g_vars)
  assert out.shape == (2, *shape)
  d_vars = jax.eval_shape(lambda: disc.init(jax.random.PRNGKey(0), jnp.zeros((2, *shape)), y, train=False))
  assert jax.eval_shape(lambda v: disc.apply(v, jnp.zeros((2, *shape)), y, train=False), d_vars).shape == (2,)


def test_mixed_size_folder_needs_image_size_then_trains_at_it(tmp_path):
  for name, size in (("a", (8, 8)), ("b", (9, 8))):
    (tmp_path / "zero").mkdir(exist_ok=True)
    Image.fromarray(np.zeros(size, np.uint8)).save(tmp_path / "zero" / f"{name}.png")
  cfg = dict(dataset=str(tmp_path), generator="cgan_mlp", discriminator="cgan_mlp", latent_dim=8, seed=0)
  cfg.update(lr=2e-4, b1=0.5, b2=0.999, num_steps=1, n_critic=1, loss="non_saturating", ema_decay=0.0)
  cfg.update(latent_dist="normal", batch_size=2)
  with pytest.raises(DataError, match=r"a.png is 8x8 but b.png is 9x8; pass --image_size=N"):
    conditional.build(cfg)
  setup = conditional.build({**cfg, "image_size": 8})
  assert setup.info["image_shape"] == (8, 8, 1)


def test_build_conditional_pair_rejects_unknown_settings():
  with pytest.raises(ConfigError, match="unknown conditional generator"):
    conditional.build_conditional_pair("nope", "cgan_mlp", (8, 8, 1), 10)
  with pytest.raises(ConfigError, match="has no setting 'width'"):
    conditional.build_conditional_pair("cgan_mlp", "cgan_mlp", (8, 8, 1), 10, g_overrides={"width": 8})


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory):
  train_x, train_y = clf.dataset_arrays("digits", "train")
  test_x, test_y = clf.dataset_arrays("digits", "test")
  assert train_x.shape == (1500, 8, 8, 1) and test_x.shape == (297, 8, 8, 1)
  module = clf.DigitsCNN(num_classes=10)
  params, stats = clf.train_classifier(module, train_x, train_y, clf.TrainConfig(max_shift=1, seed=0))
  workdir = str(tmp_path_factory.mktemp("clf"))
  info = {
    "arch": "digits_cnn",
    "arch_config": {"width": 32, "features": 128, "dropout": 0.25},
    "dataset": "digits",
    "image_shape": [8, 8, 1],
    "num_classes": 10,
  }
  clf.save_classifier(workdir, params, info)
  return workdir, module, params, test_x, test_y


def test_digits_classifier_is_accurate_and_reloads(digits_classifier):
  workdir, module, params, test_x, test_y = digits_classifier
  logits_fn, features_fn = clf.load_classifier(workdir)
  acc = clf.label_accuracy(logits_fn, test_x, test_y, 10)
  assert acc["accuracy"] > 0.9, acc
  assert np.asarray(acc["confusion"]).sum() == 297
  direct = module.apply({"params": params}, jnp.asarray(test_x[:5], jnp.float32) / 127.5 - 1.0)[0]
  np.testing.assert_allclose(np.asarray(logits_fn(test_x[:5])), np.asarray(direct), rtol=1e-5, atol=1e-5)
  extractor = clf.ClassifierFeatures(workdir)
  assert isinstance(extractor, FeatureExtractor) and extractor.name.startswith("classifier/digits_cnn/digits/")
  feats = extractor(jnp.asarray(test_x[:4], jnp.float32) / 127.5 - 1.0)
  assert feats.shape == (4, 128) and np.all(np.asarray(feats) >= 0)
  np.testing.assert_allclose(np.asarray(features_fn(test_x[:4])), np.asarray(feats), rtol=1e-5, atol=1e-5)
  # Mode counting: real test digits cover all 10 classes, a single class covers one.
  pred = clf.predict(logits_fn, test_x)
  assert clf.class_coverage(pred, 10)["classes_covered"] == 10
  one = clf.class_coverage(np.zeros(50, np.int64), 10)
  assert one["classes_covered"] == 1 and abs(one["kl_to_uniform"] - np.log(10)) < 1e-9


def test_classifier_training_is_deterministic(digits_classifier):
  x, y = clf.dataset_arrays("digits", "train")
  x, y = x[:256], y[:256]
  module = clf.DigitsCNN(num_classes=10)  # the fixture's module and step settings: no new compilation

  def digest(seed):
    config = clf.TrainConfig(epochs=2, batch_size=64, max_shift=1, seed=seed)
    return clf.params_digest(clf.train_classifier(module, x, y, config)[0])

  assert digest(3) == digest(3) != digest(4)


def test_missing_classifier_is_one_clear_error(tmp_path):
  with pytest.raises(clf.ClassifierNotFoundError, match="train_classifier.py --dataset=digits"):
    clf.load_classifier(str(tmp_path / "none"), "digits")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  workdir = tmp_path / "run"
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "experiments", "cgan.py"),
      f"--workdir={workdir}",
      f"--classifier_workdir={tmp_path / 'none'}",
      "--num_steps=1",
    ],
    capture_output=True,
    text=True,
    env=env,
    cwd=ROOT,
    timeout=120,
  )
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith("error: no trained classifier in") and "train_classifier.py" in lines[-1]
  assert not workdir.exists()


@pytest.mark.parametrize(
  "dataset,shape,arch",
  [
    ("digits", (8, 8, 1), "digits_cnn"),
    ("mnist", (28, 28, 1), "lenet"),
    ("fashion_mnist", (28, 28, 1), "lenet"),
    ("cifar10", (32, 32, 3), "cifar_cnn"),
  ],
)
def test_a_classifier_per_domain(dataset, shape, arch):
  assert clf.architecture_for(dataset, shape) == arch
  module = clf.ARCHITECTURES[arch](num_classes=10)
  x = jnp.zeros((2, *shape))
  variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x))
  logits, feats = jax.eval_shape(lambda v: module.apply(v, x), variables)
  assert logits.shape == (2, 10) and feats.shape == (2, module.features)


def test_dataset_arrays_reads_a_tfds_split(tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=6):
    x, y = clf.dataset_arrays("mnist", "test", str(tmp_path))
  assert x.shape == (6, 28, 28, 1) and x.dtype == np.uint8 and y.shape == (6,) and y.dtype == np.int32
