"""The toolkit pieces inside the GAN family's step and trainer: spectral norm, DiffAugment, LeCam, bCR, AC-GAN.

A tiny SNGAN pair (8 px) on the offline digits, trained through
`jaxgan.parallel.compile_step` and `jaxgan.trainer.fit`, with every toolkit
option on at once: the spectral-norm vectors move in training and not in
evaluation, LeCam's anchors live in the state, DiffAugment's gradient reaches
G, and stopping half-way then resuming ends on the same bits as the
uninterrupted run (vectors, anchors, optimiser states and all).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan import augment, parallel, regularizers, trainer, update
from jaxgan.data import images as images_lib
from jaxgan.errors import ConfigError
from jaxgan.families import gan
from jaxgan.models import dcgan, sngan
from jaxgan.models.layers import SpectralNormalized
from jaxgan.recipes import images as image_recipe

TX = optax.adam(2e-4, b1=0.0, b2=0.9)


def toolkit_config(**overrides):
  settings = dict(
    loss="hinge",
    n_critic=2,
    latent_dim=8,
    ema_decay=0.99,
    penalties=(*regularizers.bcr(1.0, 1.0), regularizers.lecam(0.3, decay=0.9)),
    augment=augment.DiffAugment("color,translation,cutout"),
  )
  return gan.Config(**{**settings, **overrides})


def init(config, seed=0, num_classes=0, aux=False):
  g = sngan.SNGANGenerator.tiny(num_classes=num_classes)
  d = sngan.SNGANDiscriminator.tiny(num_classes=0 if aux else num_classes, aux_classes=num_classes if aux else 0)
  return gan.init_state(config, seed=seed, generator=g, discriminator=d, g_tx=TX, d_tx=TX, data_shape=(8, 8, 1))


def digits_batches(n_critic, keep_labels=False, batch_size=16):
  source = images_lib.make_source("digits", "train")
  cfg = {"batch_size": batch_size, "seed": 0, "n_critic": n_critic}
  return image_recipe.make_batches(source, cfg, keep_labels=keep_labels)


def leaves_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def sn_vectors(stats):
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(stats)}


def fit(config, workdir, num_steps):
  step = parallel.compile_step(functools.partial(gan.train_step, config=config), mesh=parallel.make_data_mesh(1))
  cfg = trainer.TrainerConfig(workdir=str(workdir), num_steps=num_steps, log_every=2, checkpoint_every=2)
  return trainer.fit(
    name="toolkit", state=init(config), train_step=step, data=digits_batches(config.n_critic), config=cfg
  )


def test_every_toolkit_option_together_trains_and_resumes_bit_exactly(tmp_path):
  config = toolkit_config()
  start = init(config)
  assert set(start.extra["penalties"]["lecam"]) == {"anchor_real", "anchor_fake"}
  straight = fit(config, tmp_path / "straight", 4)
  assert int(straight.step) == 4
  # Spectral norm: the power-iteration vectors moved in training; LeCam: the anchors are the EMA of D's outputs.
  before, after = sn_vectors(start.disc.batch_stats), sn_vectors(straight.disc.batch_stats)
  assert before.keys() == after.keys() and any(k.endswith("/u']") for k in after)
  assert any(not np.array_equal(before[k], after[k]) for k in after)
  anchors = straight.extra["penalties"]["lecam"]
  assert float(anchors["anchor_real"]) != 0.0 and float(anchors["anchor_fake"]) != 0.0
  # Resume: 2 iterations, then the same command to 4.
  fit(config, tmp_path / "resumed", 2)
  resumed = fit(config, tmp_path / "resumed", 4)
  assert int(resumed.step) == 4 and leaves_equal(resumed, straight)


def test_spectral_norm_vectors_are_frozen_in_evaluation():
  state = init(toolkit_config())
  key = jax.random.PRNGKey(0)
  _, stats = update.apply_network(state.disc, state.disc.params, jnp.ones((4, 8, 8, 1)), train=False, key=key)
  assert leaves_equal(stats, state.disc.batch_stats)
  _, trained = update.apply_network(
    state.disc, state.disc.params, jnp.ones((4, 8, 8, 1)), train=True, key=jax.random.PRNGKey(0)
  )
  assert not leaves_equal(trained, state.disc.batch_stats)


def test_an_identity_augmentation_is_bit_identical_to_none_and_diffaugment_reaches_g():
  batch = {"x": next(iter(digits_batches(1)))["x"][0]}
  key = jax.random.PRNGKey(5)
  plain = gan.Config(loss="hinge", latent_dim=8)
  identity = gan.Config(loss="hinge", latent_dim=8, augment=lambda k, x: x)
  diffaug = gan.Config(loss="hinge", latent_dim=8, augment=augment.DiffAugment())
  state = init(plain)
  outs = [gan.g_update(state, batch, key, c) for c in (plain, identity, diffaug)]
  assert leaves_equal(outs[0][0], outs[1][0])
  g_norm = float(outs[2][1]["g_grad_norm"])
  assert np.isfinite(g_norm) and g_norm > 0 and g_norm != float(outs[0][1]["g_grad_norm"])
  d_outs = [gan.d_update(state, batch, key, c) for c in (plain, identity, diffaug)]
  assert leaves_equal(d_outs[0][0], d_outs[1][0]) and not leaves_equal(d_outs[0][0], d_outs[2][0])


def test_augmentation_and_bcr_refuse_flat_data():
  config = gan.Config(loss="hinge", latent_dim=2, augment=augment.DiffAugment())
  from jaxgan.models.mlp import ToyCritic, ToyGenerator

  state = gan.init_state(
    config, seed=0, generator=ToyGenerator(8, 1), discriminator=ToyCritic(8, 1), g_tx=TX, d_tx=TX, data_shape=(2,)
  )
  with pytest.raises(ConfigError, match="images"):
    gan.d_update(state, {"x": jnp.zeros((4, 2))}, jax.random.PRNGKey(0), config)


def test_a_stateful_penalty_needs_its_state():
  config = toolkit_config()
  bare = init(gan.Config(loss="hinge", latent_dim=8))  # built for a config without LeCam
  batch = {"x": next(iter(digits_batches(1)))["x"][0]}
  with pytest.raises(ConfigError, match="keeps a state"):
    gan.d_update(bare, batch, jax.random.PRNGKey(0), config)


def test_acgan_trains_a_class_head_and_projection_takes_labels():
  config = gan.Config(loss="acgan", latent_dim=8, num_classes=10)
  state = init(config, num_classes=10, aux=True)
  data = digits_batches(1, keep_labels=True)
  step = jax.jit(functools.partial(gan.train_step, config=config))
  losses = []
  for _ in range(3):
    state, metrics = step(state, next(data))
    losses.append(float(metrics["d_ac_loss"]))
  assert bool(metrics["finite"]) and "g_ac_loss" in metrics and all(np.isfinite(losses))
  # cGAN-PD: the projection discriminator's output depends on the labels.
  pd = gan.Config(loss="hinge", latent_dim=8, num_classes=10)
  s = init(pd, num_classes=10)
  x = jnp.ones((2, 8, 8, 1))
  a, _ = update.apply_network(s.disc, s.disc.params, x, jnp.array([0, 0]), train=False, key=jax.random.PRNGKey(0))
  b, _ = update.apply_network(s.disc, s.disc.params, x, jnp.array([3, 3]), train=False, key=jax.random.PRNGKey(0))
  assert not np.allclose(np.asarray(a), np.asarray(b))


def test_spectral_normalized_dcgan_discriminator_keeps_batchnorm_two_pass_and_normalises():
  disc = SpectralNormalized(dcgan.DCGANDiscriminator(image_size=8, width=4))
  config = gan.Config(loss="non_saturating", latent_dim=8)
  state = gan.init_state(
    config,
    seed=0,
    generator=dcgan.DCGANGenerator(image_size=8, channels=1, width=4),
    discriminator=disc,
    g_tx=TX,
    d_tx=TX,
    data_shape=(8, 8, 1),
  )
  assert update.uses_batch_norm(state.disc.batch_stats)  # BatchNorm statistics beside the SN vectors
  batch = {"x": next(iter(digits_batches(1)))["x"][0]}
  new, metrics = gan.d_update(state, batch, jax.random.PRNGKey(1), config)
  assert bool(metrics["d_finite"]) and not leaves_equal(new.disc.batch_stats, state.disc.batch_stats)


def test_a_run_saved_before_the_toolkit_flags_resumes_without_a_changed_flag():
  saved = {"loss": "hinge", "lr": 1e-4}
  current = {**saved, "spectral_norm": False, "dragan_weight": 0.0, "diffaugment": [], "lecam_decay": 0.99}
  assert trainer.changed_flags(saved, current) == {}
  assert trainer.changed_flags(saved, {**current, "spectral_norm": True}) == {"spectral_norm": (False, True)}
