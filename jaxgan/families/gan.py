"""The two-player GAN family: unconditional and class-conditional, any loss, any penalties.

Goodfellow et al. (2014) and what follows from it by changing only the model
tuple, the loss and the penalties: the MLP and maxout GAN, DCGAN (Radford et
al., 2016), cGAN (Mirza & Osindero, 2014), WGAN with clipping (Arjovsky et
al., 2017) and WGAN-GP (Gulrajani et al., 2017), LSGAN, hinge GANs, PacGAN
(Lin et al., 2018).

* `Config` -- the static settings: the loss (a name or a `jaxgan.losses.GANLoss`),
  the penalties (`jaxgan.regularizers.Penalty`), k D updates and m G updates
  per iteration, the latent distribution, EMA, packing, labels.
* `init_state` -- the initial `jaxgan.state.GANState` for a config.
* `d_update(state, batch, key, config)` / `g_update(...)` -- one discriminator /
  one generator update, each a single call of `jaxgan.update.update`.
* `train_step(state, batch, config)` -- `jaxgan.steps.alternating_step` of the
  two: ``n_critic`` D updates scanned, then ``n_gen`` G updates.
* `sample(state, z, labels)` -- G(z[, labels]) with the EMA parameters when
  kept; `standing_batch_stats` re-measures BatchNorm statistics for them.

A batch is a dict ``{"x": real samples, "label": int class ids (optional)}``
with a leading ``n_critic`` axis for `train_step` (each critic update sees its
own real batch, as in WGAN's Algorithm 1).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from jaxgan import losses as losses_lib
from jaxgan import regularizers, steps, update
from jaxgan.errors import ConfigError
from jaxgan.state import PENALTY_STATES, GANState, create_gan_state

if TYPE_CHECKING:  # the name in the inherited field annotation `loss: str | losses.GANLoss`, for pdoc and type checkers
  from jaxgan import losses  # noqa: F401

Array = jax.Array
"""@private The array type of the annotations (`jax.Array`), kept out of the API reference."""
Batch = dict[str, Array]
Metrics = dict[str, Array]

LATENT_DISTRIBUTIONS = ("normal", "uniform")
AUGMENT_TAG = 0xA06  # fold_in tag of the augmentation keys of an update


@dataclasses.dataclass(frozen=True)
class Config(steps.AdversarialConfig):
  """Static settings of the GAN update: `jaxgan.steps.AdversarialConfig` (loss, real_label, penalties,
  skip_nonfinite) and

  Attributes:
    n_critic: D updates per iteration (k in Goodfellow et al.'s Algorithm 1).
    n_gen: G updates per iteration.
    latent_dim: size of z.
    latent_dist: "normal" for N(0, I) or "uniform" for U(-1, 1).
    ema_decay: decay of the generator EMA (0: no EMA); the state must keep
      EMA parameters exactly when it is > 0.
    num_classes: > 0 for class-conditional models; G's labels are then drawn
      uniformly with their own key.
    pack: PacGAN packing degree m (Lin et al., 2018): the discriminator judges
      m samples at once, concatenated along the last axis (features of flat
      data, channels of images); the gradient penalty then acts per pack.
    augment: ``(key, images) -> images`` applied to every batch the
      discriminator sees, real and generated alike, in both updates, with
      gradients flowing through to G: DiffAugment (Zhao et al., 2020,
      `jaxgan.augment.DiffAugment`) or any differentiable augmentation. Its
      keys are folded from the update's key; penalties see the augmented
      batches (what D sees). None: no augmentation.
    unroll: inline the iteration's repeated updates up to this many (True:
      always, False: a `jax.lax.scan`); see `jaxgan.steps.repeat_update`.
      Inlined convolutions run up to ~50x faster on XLA:CPU; the two programs
      differ in floating-point rounding only.
  """

  n_critic: int = 1
  n_gen: int = 1
  latent_dim: int = 100
  latent_dist: str = "normal"
  ema_decay: float = 0.0
  num_classes: int = 0
  pack: int = 1
  augment: Callable[[Array, Array], Array] | None = None
  unroll: bool | int = steps.UNROLL_UP_TO

  def __post_init__(self):
    super().__post_init__()
    if self.n_critic < 1:
      raise ConfigError(f"n_critic must be >= 1, got {self.n_critic}")
    if self.n_gen < 1:
      raise ConfigError(f"n_gen must be >= 1, got {self.n_gen}")
    if self.latent_dim < 1:
      raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
    if self.latent_dist not in LATENT_DISTRIBUTIONS:
      raise ConfigError(f"unknown latent_dist {self.latent_dist!r}: choose one of {', '.join(LATENT_DISTRIBUTIONS)}")
    if not 0.0 <= self.ema_decay < 1.0:
      raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
    if self.pack < 1:
      raise ConfigError(f"pack must be >= 1, got {self.pack}")
    if self.pack > 1 and self.num_classes:
      raise ConfigError("packing (pack > 1) is not defined for class-conditional models: use pack=1")


def init_state(
  config: Config, *, seed: int, generator, discriminator, g_tx, d_tx, data_shape: tuple[int, ...]
) -> GANState:
  """The initial `GANState` for ``config`` (`jaxgan.state.create_gan_state`: the model contract is stated there).

  The latent size, the labels, the packing and the EMA follow ``config``;
  stateful penalties (LeCam's anchors) get their initial state in
  ``extra["penalties"]``.
  """
  state = create_gan_state(
    seed=seed,
    generator=generator,
    discriminator=discriminator,
    g_tx=g_tx,
    d_tx=d_tx,
    latent_dim=config.latent_dim,
    data_shape=data_shape,
    num_classes=config.num_classes,
    use_ema=config.ema_decay > 0,
    pack=config.pack,
  )
  return state.with_penalty_states(regularizers.initial_states(config.penalties))


# ---------------------------------------------------------------------------- sampling


def pack_samples(x: Array, pack: int) -> Array:
  """PacGAN packing: (B, ..., C) -> (B / pack, ..., pack * C).

  Consecutive samples form a pack; their last axes are concatenated, so an
  image discriminator sees pack * C channels and an MLP pack * D features.
  """
  if pack == 1:
    return x
  b = x.shape[0]
  grouped = x.reshape((b // pack, pack) + x.shape[1:])
  return jnp.moveaxis(grouped, 1, -2).reshape((b // pack,) + x.shape[1:-1] + (pack * x.shape[-1],))


def packed_shape(data_shape: tuple[int, ...], pack: int) -> tuple[int, ...]:
  """The per-example shape the discriminator sees under packing."""
  return tuple(data_shape[:-1]) + (pack * data_shape[-1],)


def sample_latent(key: Array, batch_size: int, config: Config) -> Array:
  """z ~ N(0, I) or U(-1, 1)^d, shape (batch_size, latent_dim)."""
  shape = (batch_size, config.latent_dim)
  if config.latent_dist == "uniform":
    return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
  return jax.random.normal(key, shape)


def sample_labels(key: Array, batch_size: int, config: Config) -> Array | None:
  """Uniform class ids for a conditional generator, None for an unconditional one."""
  if not config.num_classes:
    return None
  return jax.random.randint(key, (batch_size,), 0, config.num_classes)


def sample(
  state: GANState,
  z: Array,
  labels: Array | None = None,
  *,
  use_ema: bool = True,
  train: bool = False,
  key: Array | None = None,
) -> Array:
  """G(z[, labels]) with the EMA parameters when kept (evaluation mode by default)."""
  params = state.sampling_params() if use_ema else state.gen.params
  key = jax.random.PRNGKey(0) if key is None else key
  out, _ = update.apply_network(state.gen, params, z, labels, train=train, key=key)
  return out


@functools.partial(jax.jit, static_argnames=("latent_dim", "latent_dist", "num_classes", "num_batches", "batch_size"))
def _standing_stats(
  state: GANState,
  key: Array,
  latent_dim: int,
  latent_dist: str,
  num_classes: int,
  num_batches: int,
  batch_size: int,
) -> Any:
  config = Config(latent_dim=latent_dim, latent_dist=latent_dist, num_classes=num_classes)
  params = state.sampling_params()
  labels = jnp.arange(batch_size, dtype=jnp.int32) % num_classes if num_classes else None  # balanced classes

  def measure(stats, z):
    return update.apply_network(state.gen, params, z, labels, train=True, key=jax.random.PRNGKey(0), batch_stats=stats)[
      1
    ]

  zeros = jax.tree.map(jnp.zeros_like, state.gen.batch_stats)
  ones = jax.tree.map(jnp.ones_like, state.gen.batch_stats)
  keys = jax.random.split(key, num_batches)
  z0 = sample_latent(keys[0], batch_size, config)
  first = measure(zeros, z0)
  momentum = jax.tree.map(lambda a, b: jnp.mean(b - a), first, measure(ones, z0))

  def body(total, k):
    return jax.tree.map(jnp.add, total, measure(zeros, sample_latent(k, batch_size, config))), None

  total, _ = jax.lax.scan(body, first, keys[1:])
  return jax.tree.map(lambda t, m: t / (num_batches * (1.0 - m)), total, momentum)


def standing_batch_stats(
  state: GANState, config: Config, key: Array, num_batches: int = 8, batch_size: int = 256
) -> GANState:
  """Replaces the generator's BatchNorm running statistics by ones measured with the sampling params.

  The running statistics average activations of the *raw* generator; with EMA
  parameters the activations differ, so sampling with EMA weights and those
  statistics mismatches (hence the "standing statistics" of Brock et al., 2019,
  BigGAN). They are re-measured exactly: BatchNorm updates
  r <- m r + (1 - m) s(batch), so one update from r = 0 gives (1 - m) s and one
  from r = 1 gives m + (1 - m) s; their difference is the momentum m of each
  statistic. Then s(batch_k) = update_from_0 / (1 - m), averaged over
  ``num_batches`` batches of fresh z (class-balanced labels for a conditional
  ``config``), in one compiled program. A generator without BatchNorm, or
  without EMA, is returned unchanged.
  """
  if not state.gen.batch_stats or state.ema_params is None:
    return state
  stats = _standing_stats(
    state, key, config.latent_dim, config.latent_dist, config.num_classes, num_batches, batch_size
  )
  return state.replace(gen=state.gen.replace(batch_stats=stats))


# ---------------------------------------------------------------------------- updates


def _check_ema(state: GANState, config: Config) -> None:
  if config.ema_decay and state.ema_params is None:
    raise ConfigError(
      f"ema_decay={config.ema_decay} but the state keeps no EMA parameters: create it with "
      "gan.init_state(config, ...) (or create_gan_state(use_ema=True))"
    )
  if not config.ema_decay and state.ema_params is not None:
    raise ConfigError(
      "the state keeps EMA parameters but ema_decay is 0, so they would stay the initial generator and "
      "every sample would come from it: set ema_decay > 0, or create the state without EMA"
    )


def _augment(config: Config, key: Array, x: Array) -> Array:
  if x.ndim != 4:
    raise ConfigError(
      f"augment (DiffAugment) transforms images (B, H, W, C); this run's samples have shape {x.shape}: drop it"
    )
  return config.augment(key, x)


def d_update(state: GANState, batch: Batch, key: Array, config: Config) -> tuple[GANState, Metrics]:
  """One discriminator / critic update on a real batch and a fresh fake batch.

  The fakes are G(z) in training mode with the real batch's labels, without a
  gradient to G. A discriminator with BatchNorm sees the real and the fake
  batch in two passes (normalised separately, as in the reference loops);
  one without it sees both in one pass. Its loss is the config's
  discriminator loss plus its penalties (`jaxgan.regularizers.add_penalties`).
  """
  loss_pair = config.gan_loss()
  real = batch["x"]
  labels = batch.get("label")
  batch_size = real.shape[0]
  z_key, g_drop_key, d_drop_key, fake_drop_key, penalty_key = jax.random.split(key, 5)

  if batch_size % config.pack:
    raise ConfigError(f"batch size {batch_size} is not divisible by pack {config.pack}")
  z = sample_latent(z_key, batch_size, config)
  fake, _ = update.apply_network(state.gen, state.gen.params, z, labels, train=True, key=g_drop_key)
  fake = jax.lax.stop_gradient(fake)
  if config.augment is not None:
    real_aug_key, fake_aug_key = jax.random.split(jax.random.fold_in(key, AUGMENT_TAG))
    real, fake = _augment(config, real_aug_key, real), _augment(config, fake_aug_key, fake)
  fake = pack_samples(fake, config.pack)
  real = pack_samples(real, config.pack)
  disc = state.disc
  penalty_states = state.penalty_states()

  def loss_fn(params):
    if update.uses_batch_norm(disc.batch_stats):
      real_out, stats = update.apply_network(disc, params, real, labels, train=True, key=d_drop_key)
      fake_out, stats = update.apply_network(
        disc, params, fake, labels, train=True, key=fake_drop_key, batch_stats=stats
      )
      (real_out, real_cls), (fake_out, fake_cls) = update.split_outputs(real_out), update.split_outputs(fake_out)
    else:
      # Per-sample networks: one pass over [real; fake] (same maths, half the kernel launches).
      both_labels = None if labels is None else jnp.concatenate([labels, labels])
      both, stats = update.apply_network(
        disc, params, jnp.concatenate([real, fake]), both_labels, train=True, key=d_drop_key
      )
      both, both_cls = update.split_outputs(both)
      n = real.shape[0]
      real_out, fake_out = both[:n], both[n:]
      real_cls, fake_cls = (None, None) if both_cls is None else (both_cls[:n], both_cls[n:])

    def critic(x):
      return update.split_outputs(update.apply_network(disc, params, x, labels, train=True, key=d_drop_key)[0])[0]

    outputs = losses_lib.GANOutputs(
      real=real,
      fake=fake,
      real_logits=real_out,
      fake_logits=fake_out,
      labels=labels,
      critic=critic,
      step=disc.step,
      real_class_logits=real_cls,
      fake_class_logits=fake_cls,
    )
    adv, extra = losses_lib.evaluate_loss(loss_pair.discriminator, outputs)
    aux = {"d_adv_loss": adv, "d_real_out": jnp.mean(real_out), "d_fake_out": jnp.mean(fake_out), **extra}
    loss, penalties, new_states = regularizers.apply_penalties(
      adv, config.penalties, outputs, penalty_key, disc.step, penalty_states
    )
    return loss, ({**aux, **penalties, PENALTY_STATES: new_states}, stats)

  new_disc, aux, metrics = update.update(disc, loss_fn, name="d", skip_nonfinite=config.skip_nonfinite)
  new_states = aux.pop(PENALTY_STATES)
  if new_states and config.skip_nonfinite:
    new_states = update.keep_if(metrics["d_finite"], new_states, penalty_states)
  return state.replace(disc=new_disc).with_penalty_states(new_states), {**metrics, **aux}


def g_update(state: GANState, batch: Batch, key: Array, config: Config) -> tuple[GANState, Metrics]:
  """One generator update (and the EMA update, inside the compiled step).

  The batch fixes the batch size, and is D's real input when the loss
  declares ``generator_needs_real``. Conditional generators get labels drawn
  uniformly with their own key. D runs in training mode, as in the reference
  loops, and its statistics updates are dropped.
  """
  _check_ema(state, config)
  loss_pair = config.gan_loss()
  batch_size = batch["x"].shape[0]
  z_key, label_key, g_drop_key, d_drop_key = jax.random.split(key, 4)
  z = sample_latent(z_key, batch_size, config)
  labels = sample_labels(label_key, batch_size, config)
  gen, disc = state.gen, state.disc
  if config.augment is not None:
    real_aug_key, fake_aug_key = jax.random.split(jax.random.fold_in(key, AUGMENT_TAG))
  real = real_out = real_cls = None
  if loss_pair.generator_needs_real:
    real = batch["x"]
    if config.augment is not None:
      real = _augment(config, real_aug_key, real)
    real = pack_samples(real, config.pack)
    real_key = jax.random.fold_in(d_drop_key, 1)
    real_out, _ = update.apply_network(disc, disc.params, real, batch.get("label"), train=True, key=real_key)
    real_out, real_cls = update.split_outputs(real_out)

  def discriminate(x):
    return update.split_outputs(update.apply_network(disc, disc.params, x, labels, train=True, key=d_drop_key)[0])

  def critic(x):
    return discriminate(x)[0]

  def loss_fn(params):
    fake, stats = update.apply_network(gen, params, z, labels, train=True, key=g_drop_key)
    if config.augment is not None:
      fake = _augment(config, fake_aug_key, fake)
    fake = pack_samples(fake, config.pack)
    fake_out, fake_cls = discriminate(fake)
    outputs = losses_lib.GANOutputs(
      real=real,
      fake=fake,
      real_logits=real_out,
      fake_logits=fake_out,
      labels=labels,
      critic=critic,
      step=gen.step,
      real_class_logits=real_cls,
      fake_class_logits=fake_cls,
    )
    loss, extra = losses_lib.evaluate_loss(loss_pair.generator, outputs)
    return loss, ({"g_fake_out": jnp.mean(fake_out), **extra}, stats)

  new_gen, aux, metrics = update.update(gen, loss_fn, name="g", skip_nonfinite=config.skip_nonfinite)
  new_state = state.replace(gen=new_gen)
  if config.ema_decay:
    new_state = new_state.replace(
      ema_params=update.ema_update(state.ema_params, new_gen.params, config.ema_decay, new_gen.step)
    )
  return new_state, {**metrics, **aux}


def train_step(state: GANState, batch: Batch, config: Config) -> tuple[GANState, Metrics]:
  """One GAN iteration: ``n_critic`` D updates (scanned), then ``n_gen`` G updates (`jaxgan.steps`)."""
  return steps.alternating_step(
    state,
    batch,
    d_update=functools.partial(d_update, config=config),
    g_update=functools.partial(g_update, config=config),
    n_critic=config.n_critic,
    n_gen=config.n_gen,
    unroll=config.unroll,
  )
