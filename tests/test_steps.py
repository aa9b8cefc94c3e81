"""The GAN family's pure updates and iteration, the update primitive and the metrics contract, on tiny networks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan import losses, regularizers, steps, update
from jaxgan.data import toy
from jaxgan.errors import ConfigError
from jaxgan.families import gan
from jaxgan.models.mlp import ToyCritic, ToyGenerator
from jaxgan.state import GANState

CONFIG = gan.Config(loss="wasserstein", n_critic=3, latent_dim=2, penalties=(regularizers.wgan_gp(0.1),), ema_decay=0.9)
NO_EMA = gan.Config(loss="wasserstein", n_critic=3, latent_dim=2, penalties=(regularizers.wgan_gp(0.1),))


def tiny_state(config=CONFIG, seed=0, lr=1e-3, generator=None, discriminator=None):
  return gan.init_state(
    config,
    seed=seed,
    generator=generator or ToyGenerator(hidden=16, depth=2),
    discriminator=discriminator or ToyCritic(hidden=16, depth=2),
    g_tx=optax.adam(lr, 0.5, 0.9),
    d_tx=optax.adam(lr, 0.5, 0.9),
    data_shape=(2,),
  )


def batch(n_critic=None, batch_size=8, seed=0):
  return next(toy.MixtureIterator(toy.ring8(), batch_size, seed, n_critic=n_critic))


def leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_train_step_equals_n_critic_d_updates_then_a_g_update():
  state = tiny_state()
  b = batch(n_critic=3)
  fused, metrics = jax.jit(gan.train_step, static_argnums=2)(state, b, CONFIG)
  key = jax.random.fold_in(state.key, 0)
  d_key, g_key = jax.random.split(key)
  manual = state
  d_update = jax.jit(gan.d_update, static_argnums=3)
  for i, k in enumerate(jax.random.split(d_key, 3)):
    manual, _ = d_update(manual, jax.tree.map(lambda x, i=i: x[i], b), k, CONFIG)
  manual, _ = jax.jit(gan.g_update, static_argnums=3)(
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
  f = jax.jit(lambda s, b: gan.train_step(s, b, CONFIG))
  b = batch(n_critic=3)
  s1, m1 = f(state, b)
  _, m2 = f(s1, b)
  assert float(m1["d_loss"]) != float(m2["d_loss"])
  # A fresh identical state and batch give identical bits: a pure function of its inputs.
  again, m1b = f(tiny_state(), b)
  assert leaves_equal(again.disc.params, s1.disc.params) and float(m1b["d_loss"]) == float(m1["d_loss"])


def test_d_update_changes_only_the_discriminator():
  state = tiny_state()
  new, _ = gan.d_update(state, batch(), jax.random.PRNGKey(1), CONFIG)
  assert leaves_equal(new.gen.params, state.gen.params)
  assert not leaves_equal(new.disc.params, state.disc.params)


def test_g_update_changes_only_the_generator_and_the_ema():
  state = tiny_state()
  new, _ = gan.g_update(state, batch(), jax.random.PRNGKey(1), CONFIG)
  assert leaves_equal(new.disc.params, state.disc.params)
  assert not leaves_equal(new.gen.params, state.gen.params)
  # First EMA update: decay = min(0.9, (1 + 1) / (10 + 1)).
  d = 2.0 / 11.0
  for e, old, p in zip(
    jax.tree.leaves(new.ema_params), jax.tree.leaves(state.ema_params), jax.tree.leaves(new.gen.params)
  ):
    np.testing.assert_allclose(np.asarray(e), d * np.asarray(old) + (1 - d) * np.asarray(p), rtol=1e-5, atol=1e-7)


def test_ema_state_and_decay_must_agree():
  """Trap: EMA parameters kept with ema_decay 0 (they would stay the initial G), or ema_decay without them."""
  with_ema, without = tiny_state(CONFIG), tiny_state(NO_EMA)
  with pytest.raises(ConfigError, match="ema_decay is 0"):
    gan.g_update(with_ema, batch(), jax.random.PRNGKey(1), NO_EMA)
  with pytest.raises(ConfigError, match="keeps no EMA"):
    gan.g_update(without, batch(), jax.random.PRNGKey(1), CONFIG)


def test_label_smoothing_changes_the_discriminator_loss():
  cfg = gan.Config(loss="non_saturating", latent_dim=2)
  smooth = gan.Config(loss="non_saturating", latent_dim=2, real_label=0.9)
  state = tiny_state(cfg)
  _, m1 = gan.d_update(state, batch(), jax.random.PRNGKey(1), cfg)
  _, m2 = gan.d_update(state, batch(), jax.random.PRNGKey(1), smooth)
  assert float(m1["d_loss"]) != float(m2["d_loss"])


def test_label_smoothing_is_refused_where_the_loss_has_no_real_target():
  with pytest.raises(ConfigError, match="has no real-sample target"):
    gan.Config(loss="hinge", real_label=0.9)


def test_uniform_latent():
  cfg = gan.Config(latent_dim=100, latent_dist="uniform")
  z = gan.sample_latent(jax.random.PRNGKey(0), 1000, cfg)
  assert float(z.min()) >= -1 and float(z.max()) <= 1 and z.shape == (1000, 100)


def test_nonfinite_updates_are_flagged_or_skipped():
  state = tiny_state(NO_EMA)
  bad = {"x": jnp.full((3, 8, 2), jnp.nan)}
  _, m = gan.train_step(state, bad, NO_EMA)
  assert not bool(m["finite"]) and not bool(m["d_finite"])
  skip = gan.Config(
    loss="wasserstein", n_critic=3, latent_dim=2, penalties=(regularizers.wgan_gp(0.1),), skip_nonfinite=True
  )
  new, m = gan.train_step(state, bad, skip)
  assert not bool(m["finite"])
  assert leaves_equal(new.disc.params, state.disc.params)
  assert leaves_equal(new.disc.opt_state, state.disc.opt_state) and int(new.disc.step) == 0


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
    dict(penalties=("gp",)),
  ],
)
def test_bad_configs(kwargs):
  with pytest.raises(ConfigError):
    gan.Config(**kwargs)


def test_state_is_a_pytree_with_everything_needed():
  state = tiny_state()
  assert isinstance(state, GANState)
  names = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]}
  assert any(".gen.opt_state" in n for n in names) and any(".disc.opt_state" in n for n in names)
  assert any(".ema_params" in n for n in names) and ".key" in names and ".step" in names


# ---------------------------------------------------------------------------- the open pieces


def test_update_primitive_steps_one_network_and_reports_its_metrics():
  state = tiny_state(NO_EMA)
  disc = state.disc
  x = jnp.ones((4, 2))

  def loss_fn(params):
    out, stats = update.apply_network(disc, params, x, train=True, key=jax.random.PRNGKey(0))
    return jnp.mean(out), ({"mean_out": jnp.mean(out)}, stats)

  new, aux, metrics = update.update(disc, loss_fn, name="d")
  grads = jax.grad(lambda p: loss_fn(p)[0])(disc.params)
  expected = disc.apply_gradients(grads=grads)
  assert leaves_equal(new.params, expected.params) and int(new.step) == 1
  assert set(metrics) == {"d_loss", "d_grad_norm", "d_param_norm", "d_finite"} and "mean_out" in aux
  np.testing.assert_allclose(float(metrics["d_grad_norm"]), float(optax.tree.norm(grads)), rtol=1e-6)
  np.testing.assert_allclose(float(metrics["d_param_norm"]), float(optax.tree.norm(new.params)), rtol=1e-6)


def test_a_step_without_finite_flags_is_an_error():
  state = tiny_state(NO_EMA)

  def no_flags(st, b, key):
    del b, key
    return st, {"d_loss": jnp.zeros(())}

  with pytest.raises(ConfigError, match="_finite"):
    steps.alternating_step(state, batch(n_critic=1), d_update=no_flags, g_update=no_flags)


def test_a_plain_flax_module_works_as_generator_and_critic():
  """The model contract: ``__call__(x)`` without labels or ``train`` is adapted."""

  class PlainG(nn.Module):
    @nn.compact
    def __call__(self, z):
      return nn.Dense(2)(nn.relu(nn.Dense(8)(z)))

  class PlainD(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(1)(nn.relu(nn.Dense(8)(x)))[:, 0]

  state = tiny_state(NO_EMA, generator=PlainG(), discriminator=PlainD())
  new, metrics = jax.jit(lambda s, b: gan.train_step(s, b, NO_EMA))(state, batch(n_critic=3))
  assert bool(metrics["finite"]) and int(new.disc.step) == 3
  assert gan.sample(new, jnp.zeros((5, 2))).shape == (5, 2)
  conditional = gan.Config(latent_dim=2, num_classes=3)
  with pytest.raises(ConfigError, match="takes no labels"):
    tiny_state(conditional, generator=PlainG(), discriminator=PlainD())


def test_batchnorm_module_without_train_argument_is_refused():
  class NoTrain(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.BatchNorm(use_running_average=False)(nn.Dense(2)(x))

  with pytest.raises(ConfigError, match="no `train` argument"):
    tiny_state(NO_EMA, generator=NoTrain())


def test_a_registered_loss_is_used_by_name():
  calls = []

  def d_loss(o):
    calls.append("d")
    return jnp.mean(o.fake_logits) - jnp.mean(o.real_logits)

  def g_loss(o):
    calls.append("g")
    assert o.real_logits is not None  # declared below: the step computed D(real)
    return -jnp.mean(o.fake_logits - jnp.mean(o.real_logits))

  losses.register_loss("test_relativistic_wgan", losses.GANLoss(d_loss, g_loss, generator_needs_real=True))
  try:
    cfg = gan.Config(loss="test_relativistic_wgan", latent_dim=2)
    _, metrics = gan.train_step(tiny_state(cfg), batch(n_critic=1), cfg)
    assert calls == ["d", "g"] and bool(metrics["finite"])
    with pytest.raises(ConfigError, match="registered already"):
      losses.register_loss("test_relativistic_wgan", losses.wasserstein())
  finally:
    del losses.LOSSES["test_relativistic_wgan"]


def test_scheduled_and_lazy_penalty_weights():
  # A critic whose input gradient is w everywhere: R1 = |w|^2 for any batch.
  w = jnp.array([3.0, 4.0])
  outputs = losses.GANOutputs(
    real=jnp.ones((4, 2)), fake=jnp.zeros((4, 2)), real_logits=None, fake_logits=jnp.zeros(4), critic=lambda x: x @ w
  )
  key = jax.random.PRNGKey(0)
  decaying = regularizers.r1(optax.linear_schedule(10.0, 0.0, 100))
  loss, aux = regularizers.add_penalties(jnp.zeros(()), (decaying,), outputs, key, jnp.asarray(50))
  assert float(aux["r1_penalty"]) == pytest.approx(25.0)
  assert float(aux["r1_penalty_weight"]) == pytest.approx(2.5) and float(loss) == pytest.approx(2.5 * 25.0)
  lazy = regularizers.r1(10.0, every=4)
  on, aux_on = regularizers.add_penalties(jnp.zeros(()), (lazy,), outputs, key, jnp.asarray(8))
  off, aux_off = regularizers.add_penalties(jnp.zeros(()), (lazy,), outputs, key, jnp.asarray(9))
  assert float(on) == pytest.approx(4 * 5.0 * 25.0) and float(off) == 0.0 and float(aux_off["r1_penalty"]) == 0.0
