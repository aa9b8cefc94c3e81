"""The dtype policy: bf16 compute keeps parameters, optimiser state, BN statistics and losses float32."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl import flags

from jaxgan import parallel, precision
from jaxgan.errors import ConfigError
from jaxgan.families import gan
from jaxgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from jaxgan.state import create_gan_state


def _float_dtypes(tree):
  return {jnp.dtype(x.dtype) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def test_bfloat16_policy_trains_with_float32_state():
  policy = precision.get_policy("bfloat16")
  assert policy.is_mixed and not precision.get_policy("float32").is_mixed
  gen = precision.apply_policy(DCGANGenerator.tiny(), policy)
  disc = precision.apply_policy(DCGANDiscriminator.tiny(), "bfloat16")
  assert gen.dtype == jnp.bfloat16 and gen.param_dtype == jnp.float32 and gen.width == 4
  config = gan.Config(loss="non_saturating", latent_dim=8)
  state = create_gan_state(
    seed=0,
    generator=gen,
    discriminator=disc,
    g_tx=optax.adam(2e-4, 0.5),
    d_tx=optax.adam(2e-4, 0.5),
    latent_dim=8,
    data_shape=(8, 8, 1),
  )
  batch = {"x": jax.random.uniform(jax.random.PRNGKey(1), (1, 4, 8, 8, 1), minval=-1.0, maxval=1.0)}
  # The networks compute in bf16 (their intermediates are bf16) but return float32.
  z = jnp.ones((4, 8))
  _, inter = gen.apply(
    {"params": state.gen.params, "batch_stats": state.gen.batch_stats}, z, train=False, capture_intermediates=True
  )
  assert jnp.dtype(inter["intermediates"]["project"]["__call__"][0].dtype) == jnp.bfloat16
  assert gan.sample(state, z).dtype == jnp.float32

  before = np.asarray(state.gen.params["project"]["kernel"])  # the state is donated
  new, metrics = parallel.compile_step(lambda s, b: gan.train_step(s, b, config))(state, batch)
  for net in (new.gen, new.disc):
    assert _float_dtypes(net.params) == {jnp.dtype(jnp.float32)}
    assert _float_dtypes(net.opt_state) == {jnp.dtype(jnp.float32)}
    assert _float_dtypes(net.batch_stats) == {jnp.dtype(jnp.float32)}
  for name in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm"):
    assert metrics[name].dtype == jnp.float32 and np.isfinite(float(metrics[name]))
  assert bool(metrics["finite"]) and int(new.step) == 1
  # A bf16-sized update (lr 2e-4 on O(0.02) weights) is kept in the float32 master copy.
  delta = np.abs(np.asarray(new.gen.params["project"]["kernel"]) - before)
  assert 0 < delta.max() < 1e-3


def test_unknown_precision_and_flag():
  with pytest.raises(ConfigError, match="bfloat16"):
    precision.get_policy("float16")
  with pytest.raises(ConfigError, match="dtype"):
    precision.apply_policy(object(), "bfloat16")
  fv = flags.FlagValues()
  flags.DEFINE_enum("precision", "float32", list(precision.POLICIES), "", flag_values=fv)
  fv(["prog", "--precision=bfloat16"])
  assert fv.precision == "bfloat16"
  assert precision.get_policy(fv.precision).compute_dtype == jnp.bfloat16
