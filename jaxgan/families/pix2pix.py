"""The Pix2Pix family (Isola et al., 2017): paired image-to-image translation with a conditional GAN.

A `jaxgan.state.GANState` whose generator maps input images x to target
images y and whose discriminator judges (x, image) pairs concatenated on
channels. The objective (Eq. 4) is

    G* = arg min_G max_D  L_cGAN(G, D) + lambda E||y - G(x)||_1,

with the non-saturating generator loss on every patch of a PatchGAN; D's
loss is halved ("we divide the objective by 2 while optimizing D").

* `Config`, `init_state`, `train_step` (one D update, then one G update on a
  paired batch ``{"a": inputs x, "b": targets y}``), `sample` (G(x), in
  evaluation mode or, as the paper does at test time, in training mode).

Both updates are `jaxgan.update.update` calls; the adversarial terms are a
`jaxgan.losses.GANLoss` of the pair outputs, and `jaxgan.regularizers`
penalties can be added to D's loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax

from jaxgan import augment, regularizers, steps, update
from jaxgan import losses as losses_lib
from jaxgan.errors import ConfigError
from jaxgan.state import PENALTY_STATES, GANState, init_keys, init_net

if TYPE_CHECKING:  # the name in the inherited field annotation `loss: str | losses.GANLoss`, for pdoc and type checkers
  from jaxgan import losses  # noqa: F401

Array = jax.Array
"""@private The array type of the annotations (`jax.Array`), kept out of the API reference."""
Batch = dict[str, Array]
Metrics = dict[str, Array]

# fold_in tags of the penalties' and the augmentation's keys (tags, so runs without them keep their keys).
PENALTY_TAG = 0x9E4A
AUGMENT_TAG = 0xA06


def augment_pair(augment_fn: Callable[[Array, Array], Array], key: Array, pair: Array, split: int) -> Array:
  """``augment_fn`` applied with one key to both halves of a (B, H, W, C_in + C_out) pair (split at ``split``
  channels): the same translation, cutout and colour factors for input and output, each half's colour
  statistics its own."""
  return jnp.concatenate([augment_fn(key, pair[..., :split]), augment_fn(key, pair[..., split:])], axis=-1)


@dataclasses.dataclass(frozen=True)
class Config(steps.AdversarialConfig):
  """Static settings of the Pix2Pix update: `jaxgan.steps.AdversarialConfig` (``loss`` "non_saturating" is
  the paper's sigmoid cross-entropy on every patch; ``penalties`` are added to D's scaled loss) and

  Attributes:
    l1_weight: lambda (100).
    d_loss_scale: factor on D's adversarial loss (0.5).
    jitter: the random jitter of (input, target) pairs (`jaxgan.augment.Jitter`).
    augment: ``(key, images) -> images`` applied to every pair the
      discriminator sees, real and generated, in both updates (DiffAugment,
      `jaxgan.augment.DiffAugment`): the input and the output halves of a pair
      get the same draws (one key), so they stay aligned. None: off.
  """

  l1_weight: float = 100.0
  d_loss_scale: float = 0.5
  jitter: augment.Jitter = augment.Jitter()
  augment: Callable[[Array, Array], Array] | None = None

  def __post_init__(self):
    super().__post_init__()
    if self.l1_weight < 0 or self.d_loss_scale <= 0:
      raise ConfigError("l1_weight must be >= 0 and d_loss_scale > 0")


def init_state(
  config: Config,
  *,
  seed: int,
  generator,
  discriminator,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  input_shape: tuple[int, int, int],
  target_channels: int,
) -> GANState:
  """The initial state: G on (H, W, C_in) inputs, D on (H, W, C_in + C_out) pairs (keys: `jaxgan.state.init_keys`)."""
  key, (g_key, d_key) = init_keys(seed, 2)
  x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  pair = jnp.zeros((1,) + tuple(input_shape[:2]) + (input_shape[2] + target_channels,), jnp.float32)
  gen = init_net(generator, g_tx, g_key, x, None)
  disc = init_net(discriminator, d_tx, d_key, pair, None)
  state = GANState(step=jnp.zeros((), jnp.int32), key=key, gen=gen, disc=disc)
  return state.with_penalty_states(regularizers.initial_states(config.penalties))  # e.g. LeCam's anchors


def train_step(state: GANState, batch: Batch, config: Config) -> tuple[GANState, Metrics]:
  """One Pix2Pix iteration on a paired batch ``{"a": inputs x, "b": targets y}``.

  With the iteration key ``fold_in(state.key, state.step)``:

  1. jitter (x, y) jointly (same crop and flip);
  2. G(x) in training mode (dropout on, BatchNorm on batch statistics);
  3. D update on  d_loss_scale * [L_D(D(x, y), D(x, G(x)))]  plus penalties
     (D's real and fake passes normalised separately, as in the reference code);
  4. G update on  L_G(D'(x, G(x))) + lambda * mean|y - G(x)|  against the
     updated D', with the same dropout mask as in step 2.
  """
  loss_pair = config.gan_loss()
  key = jax.random.fold_in(state.key, state.step)
  jitter_key, g_drop, d_real_drop, d_fake_drop, dg_drop = jax.random.split(key, 5)
  x, y = config.jitter.pair(jitter_key, batch["a"], batch["b"])
  gen, disc = state.gen, state.disc
  penalty_states = state.penalty_states()

  fake, _ = update.apply_network(gen, gen.params, x, train=True, key=g_drop)
  real_pair = jnp.concatenate([x, y], axis=-1)
  fake_pair = jnp.concatenate([x, jax.lax.stop_gradient(fake)], axis=-1)
  if config.augment is not None:
    real_aug, fake_aug, g_aug = jax.random.split(jax.random.fold_in(key, AUGMENT_TAG), 3)
    real_pair = augment_pair(config.augment, real_aug, real_pair, x.shape[-1])
    fake_pair = augment_pair(config.augment, fake_aug, fake_pair, x.shape[-1])

  def d_loss_fn(params):
    real_out, stats = update.apply_network(disc, params, real_pair, train=True, key=d_real_drop)
    fake_out, stats = update.apply_network(disc, params, fake_pair, train=True, key=d_fake_drop, batch_stats=stats)

    def critic(pair):
      return update.apply_network(disc, params, pair, train=True, key=d_real_drop)[0]

    outputs = losses_lib.GANOutputs(
      real=real_pair, fake=fake_pair, real_logits=real_out, fake_logits=fake_out, critic=critic, step=disc.step
    )
    adv, extra = losses_lib.evaluate_loss(loss_pair.discriminator, outputs)
    aux = {
      "d_real_prob": jnp.mean(jax.nn.sigmoid(real_out)),
      "d_fake_prob": jnp.mean(jax.nn.sigmoid(fake_out)),
      **extra,
    }
    penalty_key = jax.random.fold_in(key, PENALTY_TAG)
    loss, penalties, new_states = regularizers.apply_penalties(
      config.d_loss_scale * adv, config.penalties, outputs, penalty_key, disc.step, penalty_states
    )
    return loss, ({**aux, **penalties, PENALTY_STATES: new_states}, stats)

  new_disc, d_aux, d_metrics = update.update(disc, d_loss_fn, name="d", skip_nonfinite=config.skip_nonfinite)
  new_states = d_aux.pop(PENALTY_STATES)
  if new_states and config.skip_nonfinite:
    new_states = update.keep_if(d_metrics["d_finite"], new_states, penalty_states)

  def critic_after(pair, drop_key=dg_drop):
    # D in training mode as in the reference loop; its statistics updates are dropped.
    return update.apply_network(new_disc, new_disc.params, pair, train=True, key=drop_key)[0]

  real_out = critic_after(real_pair, jax.random.fold_in(dg_drop, 1)) if loss_pair.generator_needs_real else None

  def g_loss_fn(params):
    out, stats = update.apply_network(gen, params, x, train=True, key=g_drop)
    pair = jnp.concatenate([x, out], axis=-1)
    if config.augment is not None:
      pair = augment_pair(config.augment, g_aug, pair, x.shape[-1])
    outputs = losses_lib.GANOutputs(
      real=real_pair if real_out is not None else None,
      fake=pair,
      real_logits=real_out,
      fake_logits=critic_after(pair),
      critic=critic_after,
      step=gen.step,
    )
    adv, extra = losses_lib.evaluate_loss(loss_pair.generator, outputs)
    l1 = losses_lib.l1_loss(out, y)
    return adv + config.l1_weight * l1, ({"g_adv_loss": adv, "g_l1": l1, **extra}, stats)

  new_gen, g_aux, g_metrics = update.update(gen, g_loss_fn, name="g", skip_nonfinite=config.skip_nonfinite)
  metrics = {**d_metrics, **g_metrics, **d_aux, **g_aux}
  metrics["finite"] = steps.finite_flag(metrics)
  new_state = state.replace(step=state.step + 1, gen=new_gen, disc=new_disc)
  return new_state.with_penalty_states(new_states), metrics


def sample(state: GANState, inputs: Array, *, train: bool = False, key: Array | None = None) -> Array:
  """G(inputs). ``train=False``: no dropout, BatchNorm running averages.

  ``train=True`` runs G "in exactly the same manner as during the training
  phase" (dropout on, statistics of the test batch), the paper's test-time
  choice; the running statistics are not updated.
  """
  key = jax.random.PRNGKey(0) if key is None else key
  return update.apply_network(state.gen, state.gen.params, inputs, train=train, key=key)[0]
