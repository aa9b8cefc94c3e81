"""Training state: one `GANState` pytree with a `NetState` per network, and the model contract.

Everything a run needs to resume bit for bit lives here and is checkpointed as
one pytree: both networks' parameters, BatchNorm statistics and optimiser
states, the generator's EMA parameters, the iteration counter and the run's base
PRNG key (a raw ``uint32[2]`` key so it serialises as a plain array). Extra
per-model state goes in ``extra``.

The model contract (`ModuleCall`): any Flax module serves as a generator or a
discriminator. jaxgan calls it as ``module(x, labels, train=...)`` when its
``__call__`` takes labels and a ``train`` argument, and adapts a plain
``__call__(x)`` (or ``(x, labels)``, or ``(x, *, train)``) to that signature.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from jaxgan.errors import ConfigError


class NetState(train_state.TrainState):
  """A flax `TrainState` plus BatchNorm running statistics (``{}`` when unused).

  ``apply_fn`` is a `ModuleCall`: ``apply_fn(variables, x, labels, train=...,
  rngs=..., mutable=...)`` whatever the module's own signature.
  """

  batch_stats: Any = flax.struct.field(default_factory=dict)


PENALTY_STATES = "penalties"  # the key of GANState.extra that holds the stateful penalties' states


class GANState(flax.struct.PyTreeNode):
  """The whole training state of a two-player GAN.

  Attributes:
    step: iterations done (one iteration = n_critic D updates + n_gen G updates).
    key: the run's base PRNG key; the iteration key is ``fold_in(key, step)``.
    gen: generator state.
    disc: discriminator / critic state.
    ema_params: exponential moving average of the generator parameters, or
      ``None`` when EMA is off.
    extra: model-specific arrays of a researcher's own step (checkpointed with
      the rest).
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

  def penalty_states(self) -> dict:
    """The stateful penalties' states by name (``extra["penalties"]``; ``{}`` when there are none)."""
    return self.extra.get(PENALTY_STATES, {}) if isinstance(self.extra, dict) else {}

  def with_penalty_states(self, states: dict) -> GANState:
    """This state with ``extra["penalties"] = states`` (unchanged when ``states`` is empty)."""
    return self.replace(extra={**self.extra, PENALTY_STATES: states}) if states else self


def _parameters(module: nn.Module) -> dict[str, inspect.Parameter]:
  return dict(inspect.signature(type(module).__call__).parameters)


@dataclasses.dataclass(frozen=True)
class ModuleCall:
  """A Flax module called with jaxgan's signature ``(variables, x, labels, *, train, rngs, mutable)``.

  Attributes:
    module: the Flax module.
    takes_labels: its ``__call__`` has a second positional parameter (or one
      named ``labels``); otherwise labels are not passed, and a conditional
      model is refused at creation.
    takes_train: its ``__call__`` has a ``train`` parameter; otherwise the
      module is assumed to behave alike in training and evaluation (no
      BatchNorm statistics, no dropout switch), which `init_net` checks.
  """

  module: nn.Module
  takes_labels: bool
  takes_train: bool

  @classmethod
  def of(cls, module: nn.Module) -> ModuleCall:
    params = _parameters(module)
    positional = [
      p
      for name, p in params.items()
      if name != "self" and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    varargs = any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params.values())
    takes_labels = "labels" in params or len(positional) >= 2 or varargs
    return cls(module=module, takes_labels=takes_labels, takes_train="train" in params)

  def __call__(self, variables, x, labels=None, *, train: bool, rngs=None, mutable=False, **kwargs):
    args = (x, labels) if self.takes_labels else (x,)
    if self.takes_train:
      kwargs["train"] = train
    return self.module.apply(variables, *args, rngs=rngs, mutable=mutable, **kwargs)

  def init(self, rngs, x, labels=None, **kwargs):
    args = (x, labels) if self.takes_labels else (x,)
    if self.takes_train:
      kwargs["train"] = False
    return self.module.init(rngs, *args, **kwargs)


def init_net(module, tx: optax.GradientTransformation, key: jax.Array, *example_inputs, **kwargs) -> NetState:
  """Initialises ``module`` on ``example_inputs`` (``x`` and optionally labels) and wraps it in a `NetState`.

  ``module`` follows the model contract of `ModuleCall`. A module whose
  ``__call__`` takes no labels cannot be given labels (a `ConfigError` names
  the fix), and one with BatchNorm statistics must take a ``train`` argument.
  """
  call = ModuleCall.of(module)
  x, labels = (tuple(example_inputs) + (None,))[:2]
  if labels is not None and not call.takes_labels:
    raise ConfigError(
      f"{type(module).__name__}.__call__ takes no labels but the model is class-conditional: give it a "
      "(x, labels) signature, or use num_classes=0"
    )
  params_key, dropout_key = jax.random.split(key)
  variables = dict(call.init({"params": params_key, "dropout": dropout_key}, x, labels, **kwargs))
  params = variables.pop("params")
  batch_stats = variables.pop("batch_stats", {})
  if batch_stats and not call.takes_train:
    raise ConfigError(
      f"{type(module).__name__} keeps BatchNorm statistics but its __call__ has no `train` argument: add one "
      "(use_running_average=not train), so jaxgan can switch between training and evaluation"
    )
  net = NetState.create(apply_fn=call, params=params, tx=tx, batch_stats=batch_stats)
  return net.replace(step=jnp.zeros((), jnp.int32))


# Tag folded into the base key for network initialisation (never equal to an iteration).
INIT_TAG = 0x7FFFFFFF


def init_keys(seed: int, num_networks: int) -> tuple[jax.Array, list[jax.Array]]:
  """(base key, one initialisation key per network) from one integer seed.

  The base key is ``PRNGKey(seed)``; the networks' keys are split from
  ``fold_in(base, INIT_TAG)``, so the training keys ``fold_in(base, step)``
  never reuse them.
  """
  key = jax.random.PRNGKey(seed)
  return key, list(jax.random.split(jax.random.fold_in(key, INIT_TAG), num_networks))


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

  The model contract: ``generator`` and ``discriminator`` are any Flax
  modules. jaxgan's own take ``(x, labels=None, *, train)``; a plain
  ``__call__(x)`` works as well (see `ModuleCall`): the generator maps z of
  shape (B, latent_dim) to samples of shape (B, *data_shape), the
  discriminator maps samples to one raw score per sample, shape (B,) (a
  PatchGAN's (B, H, W) map works too: the losses average every element). A
  class-conditional pair (``num_classes`` > 0) must take labels; a network
  with BatchNorm must take ``train``.

  ``pack`` > 1 initialises the discriminator for PacGAN-packed inputs (see
  `jaxgan.families.gan.pack_samples`). ``use_ema`` keeps an exponential moving
  average of the generator; the step's ``ema_decay`` must then be > 0 (and
  without it, 0): a mismatch is a `ConfigError` in the step.
  """
  key, (g_key, d_key) = init_keys(seed, 2)
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
