"""Losses, penalties and weight clipping against values computed by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan import losses, regularizers
from jaxgan.errors import ConfigError

REAL = jnp.array([2.0, -1.0, 0.5])
FAKE = jnp.array([-3.0, 0.0, 1.5])


def sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def test_minimax_discriminator_loss_is_binary_cross_entropy():
  expected = np.mean([-math.log(sigmoid(r)) for r in REAL.tolist()]) + np.mean(
    [-math.log(1 - sigmoid(f)) for f in FAKE.tolist()]
  )
  assert float(losses.minimax_discriminator_loss(REAL, FAKE)) == pytest.approx(expected, rel=1e-6)


def test_one_sided_label_smoothing_only_softens_real_targets():
  t = 0.9
  expected = np.mean(
    [-(t * math.log(sigmoid(r)) + (1 - t) * math.log(1 - sigmoid(r))) for r in REAL.tolist()]
  ) + np.mean([-math.log(1 - sigmoid(f)) for f in FAKE.tolist()])
  assert float(losses.minimax_discriminator_loss(REAL, FAKE, real_label=0.9)) == pytest.approx(expected, rel=1e-6)


def test_generator_losses():
  minimax = np.mean([math.log(1 - sigmoid(f)) for f in FAKE.tolist()])
  non_sat = np.mean([-math.log(sigmoid(f)) for f in FAKE.tolist()])
  assert float(losses.minimax_generator_loss(FAKE)) == pytest.approx(minimax, rel=1e-6)
  assert float(losses.non_saturating_generator_loss(FAKE)) == pytest.approx(non_sat, rel=1e-6)


def test_saturation_differs_where_discriminator_rejects_fakes():
  logit = jnp.array([-10.0])
  g_minimax = jax.grad(losses.minimax_generator_loss)(logit)
  g_nonsat = jax.grad(losses.non_saturating_generator_loss)(logit)
  assert abs(float(g_minimax[0])) < 1e-4 < abs(float(g_nonsat[0]))


def test_wasserstein_losses():
  assert float(losses.wasserstein_critic_loss(REAL, FAKE)) == pytest.approx((-1.5 / 3) - (1.5 / 3))
  assert float(losses.wasserstein_generator_loss(FAKE)) == pytest.approx(1.5 / 3)


def test_least_squares_losses():
  d = 0.5 * np.mean((np.array(REAL) - 1) ** 2) + 0.5 * np.mean(np.array(FAKE) ** 2)
  g = 0.5 * np.mean((np.array(FAKE) - 1) ** 2)
  assert float(losses.least_squares_discriminator_loss(REAL, FAKE)) == pytest.approx(d, rel=1e-6)
  assert float(losses.least_squares_generator_loss(FAKE)) == pytest.approx(g, rel=1e-6)


def test_hinge_losses():
  d = np.mean(np.maximum(0, 1 - np.array(REAL))) + np.mean(np.maximum(0, 1 + np.array(FAKE)))
  assert float(losses.hinge_discriminator_loss(REAL, FAKE)) == pytest.approx(d, rel=1e-6)
  assert float(losses.hinge_generator_loss(FAKE)) == pytest.approx(0.5, rel=1e-6)


def test_patch_outputs_are_averaged():
  real = jnp.ones((2, 3, 3))
  fake = -jnp.ones((2, 3, 3))
  assert float(losses.hinge_discriminator_loss(real, fake)) == pytest.approx(0.0)


def test_unknown_loss_name():
  with pytest.raises(ConfigError, match="unknown loss 'bogus'"):
    losses.get_loss("bogus")


def test_gradient_penalty_of_linear_critic():
  # f(x) = w.x has gradient w everywhere: GP = (|w| - 1)^2 whatever the interpolates.
  w = jnp.array([3.0, 4.0])
  real = jax.random.normal(jax.random.PRNGKey(0), (8, 2))
  fake = jax.random.normal(jax.random.PRNGKey(1), (8, 2))
  gp = regularizers.gradient_penalty(lambda x: x @ w, real, fake, jax.random.PRNGKey(2))
  assert float(gp) == pytest.approx((5.0 - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_is_per_sample_on_interpolates():
  # f(x) = 1/2 |x|^2 has gradient x: GP = mean_i (|x^_i| - 1)^2 with x^_i = e_i r_i + (1 - e_i) f_i.
  real = jnp.array([[2.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
  fake = jnp.array([[0.0, 0.0], [0.0, 3.0], [-1.0, -1.0]])
  key = jax.random.PRNGKey(3)
  eps = np.asarray(jax.random.uniform(key, (3, 1)))
  x_hat = eps * np.asarray(real) + (1 - eps) * np.asarray(fake)
  expected = np.mean((np.linalg.norm(x_hat, axis=1) - 1.0) ** 2)
  gp = regularizers.gradient_penalty(lambda x: 0.5 * jnp.sum(x * x, axis=-1), real, fake, key)
  assert float(gp) == pytest.approx(expected, rel=1e-5)


def test_r1_penalty():
  real = jnp.array([[1.0, 2.0], [3.0, 0.0]])
  r1 = regularizers.r1_penalty(lambda x: 0.5 * jnp.sum(x * x, axis=-1), real)
  assert float(r1) == pytest.approx((5.0 + 9.0) / 2)


@pytest.mark.parametrize("c", [0.01, 0.05, 1.0])
def test_weight_clipping_keeps_every_weight_in_box(c):
  key = jax.random.PRNGKey(0)
  params = {"w": jax.random.normal(key, (256, 64)) * 0.1, "b": jnp.zeros((64,))}
  tx = optax.chain(optax.rmsprop(5.0 * c), regularizers.clip_weights(c))
  opt_state = tx.init(params)
  for i in range(30):
    grads = jax.tree.map(lambda p, i=i: jax.random.normal(jax.random.fold_in(key, i), p.shape) * 10.0, params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    for leaf in jax.tree.leaves(params):
      assert float(jnp.max(jnp.abs(leaf))) <= c
  # The box is actually used: most weights sit on its faces after large steps.
  assert float(jnp.mean(jnp.abs(params["w"]) > 0.99 * c)) > 0.2


def test_weight_clipping_leaves_interior_updates_alone():
  params = {"w": jnp.array([0.001, -0.002])}
  tx = regularizers.clip_weights(0.01)
  updates, _ = tx.update({"w": jnp.array([0.001, 0.001])}, tx.init(params), params)
  np.testing.assert_allclose(np.asarray(optax.apply_updates(params, updates)["w"]), [0.002, -0.001], rtol=1e-6)


def test_weight_clipping_rejects_bad_values():
  with pytest.raises(ConfigError):
    regularizers.clip_weights(0.0)
