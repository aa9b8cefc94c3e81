"""The pure d/g/train steps on tiny networks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan import steps
from jaxgan.data import toy
from jaxgan.errors import ConfigError
from jaxgan.models.mlp import ToyCritic, ToyGenerator
from jaxgan.state import GANState, create_gan_state


def tiny_state(seed=0, ema=False, lr=1e-3):
  return create_gan_state(
    seed=seed,
    generator=ToyGenerator(hidden=16, depth=2),
    discriminator=ToyCritic(hidden=16, depth=2),
    g_tx=optax.adam(lr, 0.5, 0.9),
    d_tx=optax.adam(lr, 0.5, 0.9),
    latent_dim=2,
    data_shape=(2,),
    use_ema=ema,
  )


def batch(n_critic=None, batch_size=8, seed=0):
  return next(toy.MixtureIterator(toy.ring8(), batch_size, seed, n_critic=n_critic))


CONFIG = steps.StepConfig(loss="wasserstein", n_critic=3, latent_dim=2, gp_weight=0.1, ema_decay=0.9)


def leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_train_step_equals_n_critic_d_steps_then_a_g_step():
  state = tiny_state(ema=True)
  b = batch(n_critic=3)
  fused, metrics = jax.jit(steps.train_step, static_argnums=2)(state, b, CONFIG)
  key = jax.random.fold_in(state.key, 0)
  d_key, g_key = jax.random.split(key)
  manual = state
  d_step = jax.jit(steps.d_step, static_argnums=3)
  for i, k in enumerate(jax.random.split(d_key, 3)):
    manual, _ = d_step(manual, jax.tree.map(lambda x, i=i: x[i], b), k, CONFIG)
  manual, _ = jax.jit(steps.g_step, static_argnums=3)(
    manual, jax.tree.map(lambda x: x[0], b), jax.random.split(g_key, 1)[0], CONFIG
  )
  for x, y in zip(jax.tree.leaves(fused.replace(step=0)), jax.tree.leaves(manual)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=1e-6)
  assert int(fused.step) == 1 and int(fused.disc.step) == 3 and int(fused.gen.step) == 1
  assert bool(metrics["finite"])
  for name in ("d_loss", "g_loss", "gradient_penalty", "d_grad_norm", "g_grad_norm", "wasserstein_estimate"):
    assert np.isfinite(float(metrics[name]))


def test_each_iteration_uses_a_new_key():
  state = tiny_state()
  f = steps.make_train_step(CONFIG)
  b = batch(n_critic=3)
  s1, m1 = f(state, b)
  s2, m2 = f(s1, b)
  assert float(m1["d_loss"]) != float(m2["d_loss"])
  # A fresh identical state and batch give identical bits: a pure function of its inputs.
  s1b, m1b = steps.make_train_step(CONFIG)(tiny_state(), b)
  assert leaves_equal(s1b.disc.params, steps.make_train_step(CONFIG)(tiny_state(), b)[0].disc.params)
  assert float(m1b["d_loss"]) == float(m1["d_loss"])


def test_d_step_updates_only_the_discriminator():
  state = tiny_state()
  new, _ = steps.d_step(state, batch(), jax.random.PRNGKey(1), CONFIG)
  assert leaves_equal(new.gen.params, state.gen.params)
  assert not leaves_equal(new.disc.params, state.disc.params)


def test_g_step_updates_only_the_generator_and_the_ema():
  state = tiny_state(ema=True)
  new, _ = steps.g_step(state, batch(), jax.random.PRNGKey(1), CONFIG)
  assert leaves_equal(new.disc.params, state.disc.params)
  assert not leaves_equal(new.gen.params, state.gen.params)
  # First EMA update: decay = min(0.9, (1 + 1) / (10 + 1)).
  d = 2.0 / 11.0
  for e, old, p in zip(
    jax.tree.leaves(new.ema_params), jax.tree.leaves(state.ema_params), jax.tree.leaves(new.gen.params)
  ):
    np.testing.assert_allclose(np.asarray(e), d * np.asarray(old) + (1 - d) * np.asarray(p), rtol=1e-5, atol=1e-7)


def test_label_smoothing_changes_the_discriminator_loss():
  state = tiny_state()
  cfg = steps.StepConfig(loss="non_saturating", latent_dim=2)
  smooth = steps.StepConfig(loss="non_saturating", latent_dim=2, real_label=0.9)
  _, m1 = steps.d_step(state, batch(), jax.random.PRNGKey(1), cfg)
  _, m2 = steps.d_step(state, batch(), jax.random.PRNGKey(1), smooth)
  assert float(m1["d_loss"]) != float(m2["d_loss"])


def test_uniform_latent():
  cfg = steps.StepConfig(latent_dim=100, latent_dist="uniform")
  z = steps.sample_latent(jax.random.PRNGKey(0), 1000, cfg)
  assert float(z.min()) >= -1 and float(z.max()) <= 1 and z.shape == (1000, 100)


def test_nonfinite_updates_are_flagged_or_skipped():
  state = tiny_state()
  bad = {"x": jnp.full((3, 8, 2), jnp.nan)}
  _, m = steps.train_step(state, bad, CONFIG)
  assert not bool(m["finite"]) and not bool(m["d_finite"])
  skip_cfg = steps.StepConfig(loss="wasserstein", n_critic=3, latent_dim=2, gp_weight=0.1, skip_nonfinite=True)
  new, m = steps.train_step(state, bad, skip_cfg)
  assert not bool(m["finite"])
  assert leaves_equal(new.disc.params, state.disc.params)


@pytest.mark.parametrize(
  "kwargs",
  [
    dict(loss="nope"),
    dict(n_critic=-1),
    dict(n_critic=0),
    dict(n_gen=0),
    dict(latent_dist="cauchy"),
    dict(ema_decay=1.0),
    dict(real_label=0.0),
  ],
)
def test_bad_configs(kwargs):
  with pytest.raises(ConfigError):
    steps.StepConfig(**kwargs)


def test_state_is_a_pytree_with_everything_needed():
  state = tiny_state(ema=True)
  assert isinstance(state, GANState)
  names = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]}
  assert any(".gen.opt_state" in n for n in names) and any(".disc.opt_state" in n for n in names)
  assert any(".ema_params" in n for n in names) and ".key" in names and ".step" in names
