"""The toolkit's losses and penalties against TF-GAN's unit-test values and hand-computed values.

TF-GAN's own tests (tensorflow_gan/python/losses/losses_impl_test.py:
``RelativisticAverageLoss`` and ``ACGANLossTest``) give the inputs and the
expected values below; jaxgan must reproduce them to 1e-5. The losses TF-GAN
does not have (RSGAN, RSLSGAN, RaLSGAN) and every penalty are checked against
values written out by hand from the papers' formulas.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import losses, regularizers
from jaxgan.errors import ConfigError

# TF-GAN RelativisticAverageLoss.setUp
TFGAN_GEN = jnp.array([10.0, 4.4, -5.5, 3.6])
TFGAN_REAL = jnp.array([-2.0, 0.4, 12.5, 2.7])

# TF-GAN ACGANLossTest.setUp
AC_GEN = jnp.array([[10.0, 4.4, -5.5, 3.6], [-4.0, 4.4, 5.2, 4.6], [1.1, 2.4, -3.5, 5.6], [1.1, 2.4, -3.5, 5.6]])
AC_REAL = jnp.array([[-2.0, 0.4, 12.5, 2.7], [-1.2, 1.9, 12.3, 2.6], [-2.4, -1.7, 2.5, 2.7], [1.1, 2.4, -3.5, 5.6]])
AC_ONE_HOT = jnp.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0]], jnp.float32)


def test_relativistic_average_matches_tfgan():
  d = losses.relativistic_average_discriminator_loss(TFGAN_REAL, TFGAN_GEN)
  g = losses.relativistic_average_generator_loss(TFGAN_REAL, TFGAN_GEN)
  assert abs(float(d) - 4.390114) < 1e-5
  assert abs(float(g) - 4.9401135) < 1e-5


def test_acgan_matches_tfgan():
  d = losses.acgan_discriminator_loss(AC_REAL, AC_GEN, AC_ONE_HOT)
  g = losses.acgan_generator_loss(AC_GEN, AC_ONE_HOT)
  assert abs(float(d) - 9.43950) < 1e-5
  assert abs(float(g) - 3.84974) < 1e-5


def _softplus(x):
  return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def test_relativistic_standard_and_least_squares_by_hand():
  r, f = [-2.0, 0.4, 12.5, 2.7], [10.0, 4.4, -5.5, 3.6]
  pairs = list(zip(r, f))
  rsgan_d = sum(_softplus(-(a - b)) for a, b in pairs) / 4
  rsgan_g = sum(_softplus(-(b - a)) for a, b in pairs) / 4
  rslsgan_d = sum((a - b - 1) ** 2 for a, b in pairs) / 4
  rslsgan_g = sum((b - a - 1) ** 2 for a, b in pairs) / 4
  mr, mf = sum(r) / 4, sum(f) / 4
  ralsgan_d = sum((a - mf - 1) ** 2 for a in r) / 4 + sum((b - mr + 1) ** 2 for b in f) / 4
  ralsgan_g = sum((b - mr - 1) ** 2 for b in f) / 4 + sum((a - mf + 1) ** 2 for a in r) / 4
  real, fake = jnp.array(r), jnp.array(f)
  got = [
    losses.relativistic_discriminator_loss(real, fake),
    losses.relativistic_generator_loss(real, fake),
    losses.relativistic_least_squares_discriminator_loss(real, fake),
    losses.relativistic_least_squares_generator_loss(real, fake),
    losses.relativistic_average_least_squares_discriminator_loss(real, fake),
    losses.relativistic_average_least_squares_generator_loss(real, fake),
  ]
  want = [rsgan_d, rsgan_g, rslsgan_d, rslsgan_g, ralsgan_d, ralsgan_g]
  np.testing.assert_allclose(np.array(got, np.float64), want, rtol=1e-5)


@pytest.mark.parametrize(
  "name", ["relativistic", "relativistic_average", "relativistic_least_squares", "relativistic_average_least_squares"]
)
def test_relativistic_losses_are_registered_and_need_real(name):
  pair = losses.get_loss(name)
  assert pair.generator_needs_real
  o = losses.GANOutputs(real=None, fake=None, real_logits=TFGAN_REAL, fake_logits=TFGAN_GEN)
  assert np.isfinite(float(pair.discriminator(o))) and np.isfinite(float(pair.generator(o)))


def test_acgan_loss_value_adds_the_class_term():
  labels = jnp.argmax(AC_ONE_HOT, -1)
  o = losses.GANOutputs(
    real=None,
    fake=None,
    real_logits=TFGAN_REAL,
    fake_logits=TFGAN_GEN,
    labels=labels,
    real_class_logits=AC_REAL,
    fake_class_logits=AC_GEN,
  )
  pair = losses.get_loss("acgan")
  d, d_extra = losses.evaluate_loss(pair.discriminator, o)
  g, g_extra = losses.evaluate_loss(pair.generator, o)
  base_d = losses.minimax_discriminator_loss(TFGAN_REAL, TFGAN_GEN)
  base_g = losses.non_saturating_generator_loss(TFGAN_GEN)
  assert abs(float(d) - float(base_d) - 9.43950) < 1e-4
  assert abs(float(g) - float(base_g) - 3.84974) < 1e-4
  assert abs(float(d_extra["d_ac_loss"]) - 9.43950) < 1e-5 and abs(float(g_extra["g_ac_loss"]) - 3.84974) < 1e-5
  with pytest.raises(ConfigError, match="auxiliary classifier"):
    pair.discriminator(losses.GANOutputs(real=None, fake=None, real_logits=TFGAN_REAL, fake_logits=TFGAN_GEN))


# ---------------------------------------------------------------------------- penalties

W = jnp.array([3.0, -4.0, 12.0])  # ||w|| = 13


def linear_critic(x):
  return x.reshape(x.shape[0], -1) @ W


def quadratic_critic(x):  # grad = x
  return 0.5 * jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=-1)


REAL = jnp.array([[1.0, 2.0, 2.0], [0.0, 0.0, 0.5], [3.0, 0.0, 4.0]])  # norms 3, 0.5, 5


def test_dragan_on_a_linear_critic_is_the_gradient_norm_gap():
  value = regularizers.dragan_penalty(linear_critic, REAL, jax.random.PRNGKey(3))
  assert float(value) == pytest.approx((13.0 - 1.0) ** 2, rel=1e-6)


def test_dragan_without_perturbation_is_the_penalty_at_the_data():
  value = regularizers.dragan_penalty(quadratic_critic, REAL, jax.random.PRNGKey(3), perturbation=0.0)
  want = ((3 - 1) ** 2 + (0.5 - 1) ** 2 + (5 - 1) ** 2) / 3
  assert float(value) == pytest.approx(want, rel=1e-5)


def test_dragan_perturbs_within_half_a_std_above_the_data():
  # With the quadratic critic, ||grad|| = ||x^||; x^ - x = alpha * 0.5 std(x) u lies in [0, 0.5 std) per element.
  sd = float(jnp.std(REAL))
  for seed in range(5):
    value = float(regularizers.dragan_penalty(quadratic_critic, REAL, jax.random.PRNGKey(seed)))
    low = np.mean([(np.linalg.norm(r) - 1) ** 2 for r in np.asarray(REAL)])
    high = np.mean([(np.linalg.norm(np.asarray(r) + 0.5 * sd) - 1) ** 2 for r in np.asarray(REAL)])
    assert low <= value <= high


def _outputs(critic, real, fake, step=0):
  return losses.GANOutputs(
    real=real,
    fake=fake,
    real_logits=critic(real),
    fake_logits=critic(fake),
    critic=critic,
    step=jnp.asarray(step, jnp.int32),
  )


def test_bcr_by_hand():
  images = jnp.arange(2 * 2 * 2 * 1, dtype=jnp.float32).reshape(2, 2, 2, 1) / 8.0

  def critic(x):
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1) * 0.5

  def plus_one(key, x):  # T(x) = x + 1: D(T(x)) - D(x) = 0.5 * 4 = 2 for every sample
    del key
    return x + 1.0

  real_pen, fake_pen = regularizers.bcr(10.0, 5.0, augment=plus_one)
  o = _outputs(critic, images, -images)
  loss, aux = regularizers.add_penalties(jnp.zeros(()), (real_pen, fake_pen), o, jax.random.PRNGKey(0), jnp.asarray(0))
  assert float(aux["bcr_real"]) == pytest.approx(4.0) and float(aux["bcr_fake"]) == pytest.approx(4.0)
  assert float(loss) == pytest.approx(10.0 * 4.0 + 5.0 * 4.0)
  with pytest.raises(ConfigError, match="images"):
    regularizers.add_penalties(jnp.zeros(()), (real_pen,), _outputs(critic, REAL, REAL), jax.random.PRNGKey(0), 0)


def test_lecam_by_hand_and_its_state():
  def ident(x):
    return x

  real, fake = jnp.array([1.0, 2.0, 3.0]), jnp.array([-1.0, 0.0, -2.0])
  penalty = regularizers.lecam(0.3, decay=0.9)
  state = {"anchor_real": jnp.asarray(0.5), "anchor_fake": jnp.asarray(-0.5)}
  o = _outputs(ident, real, fake, step=7)
  loss, aux, new = regularizers.apply_penalties(
    jnp.zeros(()), (penalty,), o, jax.random.PRNGKey(0), jnp.asarray(7), {"lecam": state}
  )
  a_r, a_f = 0.9 * 0.5 + 0.1 * 2.0, 0.9 * -0.5 + 0.1 * -1.0  # 0.65, -0.55
  assert float(new["lecam"]["anchor_real"]) == pytest.approx(a_r)
  assert float(new["lecam"]["anchor_fake"]) == pytest.approx(a_f)
  hinged = np.mean(np.square(np.maximum(np.array([1, 2, 3]) - a_f, 0))) + np.mean(
    np.square(np.maximum(a_r - np.array([-1, 0, -2]), 0))
  )
  assert float(aux["lecam"]) == pytest.approx(hinged, rel=1e-6)
  assert float(loss) == pytest.approx(0.3 * hinged, rel=1e-6)
  # The paper's Eq. 3 (no hinge): real logits below alpha_F are penalised too.
  plain = regularizers.lecam_penalty(jnp.array([-1.0]), jnp.array([1.0]), jnp.asarray(0.0), jnp.asarray(0.0), False)
  hinge = regularizers.lecam_penalty(jnp.array([-1.0]), jnp.array([1.0]), jnp.asarray(0.0), jnp.asarray(0.0), True)
  assert float(plain) == pytest.approx(2.0) and float(hinge) == 0.0
  # Step 0: the anchors start at the batch means (no decay from the zero init).
  _, _, first = regularizers.apply_penalties(
    jnp.zeros(()), (penalty,), _outputs(ident, real, fake, 0), jax.random.PRNGKey(0), jnp.asarray(0),
    regularizers.initial_states((penalty,)),
  )  # fmt: skip
  assert float(first["lecam"]["anchor_real"]) == pytest.approx(2.0)
  assert float(first["lecam"]["anchor_fake"]) == pytest.approx(-1.0)
  with pytest.raises(ConfigError, match="keep a state"):
    regularizers.add_penalties(jnp.zeros(()), (penalty,), o, jax.random.PRNGKey(0), jnp.asarray(7))


def test_lazy_stateful_penalty_keeps_its_state_when_skipped():
  penalty = regularizers.lecam(1.0, decay=0.5, every=4)
  o = _outputs(lambda x: x, jnp.array([1.0, 3.0]), jnp.array([0.0, -2.0]), step=5)
  state = {"lecam": {"anchor_real": jnp.asarray(7.0), "anchor_fake": jnp.asarray(-7.0)}}
  _, aux, new = regularizers.apply_penalties(jnp.zeros(()), (penalty,), o, jax.random.PRNGKey(0), jnp.asarray(5), state)
  assert float(aux["lecam"]) == 0.0 and float(new["lecam"]["anchor_real"]) == 7.0
  _, aux, new = regularizers.apply_penalties(jnp.zeros(()), (penalty,), o, jax.random.PRNGKey(0), jnp.asarray(8), state)
  assert float(new["lecam"]["anchor_real"]) == pytest.approx(0.5 * 7.0 + 0.5 * 2.0) and float(aux["lecam"]) > 0


def test_lazy_r1_is_an_option_of_r1():
  p = regularizers.r1(10.0, every=16)
  assert p.every == 16 and p.weight == 5.0
  o = _outputs(quadratic_critic, REAL, REAL)
  on = regularizers.add_penalties(jnp.zeros(()), (p,), o, jax.random.PRNGKey(0), jnp.asarray(32))[0]
  off = regularizers.add_penalties(jnp.zeros(()), (p,), o, jax.random.PRNGKey(0), jnp.asarray(33))[0]
  r1 = np.mean([np.sum(np.square(r)) for r in np.asarray(REAL)])
  assert float(on) == pytest.approx(16 * 5.0 * r1, rel=1e-6) and float(off) == 0.0
