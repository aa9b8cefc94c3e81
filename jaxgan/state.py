"""Training state: one `GANState` pytree with a `NetState` per network.

Everything a run needs to resume bit for bit lives here and is checkpointed as
one pytree: both networks' parameters, BatchNorm statistics and optimiser
states, the generator's EMA parameters, the iteration counter and the run's base
PRNG key (a raw ``uint32[2]`` key so it serialises as a plain array). Extra
per-model state (e.g. CycleGAN's image pool) goes in ``extra``.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class NetState(train_state.TrainState):
  """A flax `TrainState` plus BatchNorm running statistics (``{}`` when unused)."""

  batch_stats: Any = flax.struct.field(default_factory=dict)


class GANState(flax.struct.PyTreeNode):
  """The whole training state of a two-player GAN.

  Attributes:
    step: iterations done (one iteration = n_critic D updates + n_gen G updates).
    key: the run's base PRNG key; the iteration key is ``fold_in(key, step)``.
    gen: generator state.
    disc: discriminator / critic state.
    ema_params: exponential moving average of the generator parameters, or
      ``None`` when EMA is off.
    extra: model-specific arrays (e.g. an image history pool).
  """

  step: jax.Array
  key: jax.Array
  gen: NetState
  disc: NetState
  ema_params: Any = None
  extra: Any = flax.struct.field(default_factory=dict)

  def sampling_params(self) -> Any:
    """Generator parameters to sample with: the EMA ones when kept."""
    return self.ema_params if self.ema_params is not None else self.gen.params


def init_net(module, tx: optax.GradientTransformation, key: jax.Array, *example_inputs, **kwargs) -> NetState:
  """Initialises ``module`` on ``example_inputs`` and wraps it in a `NetState`."""
  params_key, dropout_key = jax.random.split(key)
  variables = module.init({"params": params_key, "dropout": dropout_key}, *example_inputs, train=False, **kwargs)
  variables = dict(variables)
  params = variables.pop("params")
  batch_stats = variables.pop("batch_stats", {})
  net = NetState.create(apply_fn=module.apply, params=params, tx=tx, batch_stats=batch_stats)
  return net.replace(step=jnp.zeros((), jnp.int32))


def create_gan_state(
  *,
  seed: int,
  generator,
  discriminator,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  latent_dim: int,
  data_shape: tuple[int, ...],
  num_classes: int = 0,
  use_ema: bool = False,
  pack: int = 1,
) -> GANState:
  """Builds the initial `GANState` from one integer seed.

  ``pack`` > 1 initialises the discriminator for PacGAN-packed inputs
  (see `jaxgan.steps.pack_samples`). The seed gives the base key; network initialisation uses keys folded from it
  under fixed tags, so training keys ``fold_in(key, step)`` never reuse them.
  """
  key = jax.random.PRNGKey(seed)
  init_key = jax.random.fold_in(key, 0x7FFFFFFF)
  g_key, d_key = jax.random.split(init_key)
  labels = jnp.zeros((1,), jnp.int32) if num_classes else None
  z = jnp.zeros((1, latent_dim), jnp.float32)
  x = jnp.zeros((1,) + tuple(data_shape[:-1]) + (pack * data_shape[-1],), jnp.float32)
  gen = init_net(generator, g_tx, g_key, z, labels)
  disc = init_net(discriminator, d_tx, d_key, x, labels)
  ema = jax.tree.map(jnp.copy, gen.params) if use_ema else None
  return GANState(step=jnp.zeros((), jnp.int32), key=key, gen=gen, disc=disc, ema_params=ema)


def param_count(params: Any) -> int:
  """Number of scalar parameters in a pytree."""
  return sum(int(x.size) for x in jax.tree.leaves(params))
