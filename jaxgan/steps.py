"""Pure GAN update steps.

* `d_step(state, batch, key, config)`: one discriminator / critic update.
* `g_step(state, batch, key, config)`: one generator update (+ EMA update).
* `train_step(state, batch, config)`: one iteration, i.e. ``config.n_critic``
  D updates fused with `jax.lax.scan` and ``config.n_gen`` G updates, all inside
  one compiled function. Its key is ``fold_in(state.key, state.step)``, so every
  iteration draws fresh randomness and the same (seed, step) gives the same bits.
* `make_train_step(config)`: the jitted `train_step`, state donated.

A batch is a dict ``{"x": real samples, "label": int class ids (optional)}``.
`train_step` takes it with a leading ``n_critic`` axis: each critic update sees
its own real batch, as in WGAN's Algorithm 1. Every step returns
``(state, metrics)`` with losses, logits, gradient and parameter norms and a
``finite`` flag; with ``skip_nonfinite`` an update whose loss or gradient is not
finite is dropped instead of applied.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgan import losses as losses_lib
from jaxgan import regularizers
from jaxgan.errors import ConfigError
from jaxgan.state import GANState, NetState

Array = jax.Array
Batch = dict[str, Array]
Metrics = dict[str, Array]

LATENT_DISTRIBUTIONS = ("normal", "uniform")


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static settings of the GAN update (hashable: it is a jit static argument).

  Attributes:
    loss: a name in `jaxgan.losses.LOSSES`.
    n_critic: D updates per iteration (k in Goodfellow et al.'s Algorithm 1).
    n_gen: G updates per iteration.
    latent_dim: size of z.
    latent_dist: "normal" for N(0, I) or "uniform" for U(-1, 1).
    real_label: target for real samples; 0.9 is one-sided label smoothing.
    gp_weight: lambda of the WGAN-GP penalty (0 disables it).
    r1_weight: gamma of the R1 penalty, applied as gamma / 2 * R1 (0 disables it).
    ema_decay: decay of the generator EMA (0 disables it).
    num_classes: > 0 for class-conditional models; G's labels are then drawn
      uniformly with their own key.
    skip_nonfinite: drop (rather than apply) an update whose loss or gradients
      are NaN/Inf.
    pack: PacGAN packing degree m (Lin et al., 2018): the discriminator judges
      m samples at once, concatenated along the last axis (features of flat
      data, channels of images); the gradient penalty then acts per pack.
  """

  loss: str = "non_saturating"
  n_critic: int = 1
  n_gen: int = 1
  latent_dim: int = 100
  latent_dist: str = "normal"
  real_label: float = 1.0
  gp_weight: float = 0.0
  r1_weight: float = 0.0
  ema_decay: float = 0.0
  num_classes: int = 0
  skip_nonfinite: bool = False
  pack: int = 1

  def __post_init__(self):
    losses_lib.get_loss(self.loss)
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
    if self.gp_weight < 0 or self.r1_weight < 0:
      raise ConfigError("gp_weight and r1_weight must be >= 0")
    if not 0.0 < self.real_label <= 1.0:
      raise ConfigError(f"real_label must be in (0, 1], got {self.real_label}")
    if self.pack < 1:
      raise ConfigError(f"pack must be >= 1, got {self.pack}")
    if self.pack > 1 and self.num_classes:
      raise ConfigError("packing (pack > 1) is not defined for class-conditional models: use pack=1")


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


def sample_latent(key: Array, batch_size: int, config: StepConfig) -> Array:
  """z ~ N(0, I) or U(-1, 1)^d, shape (batch_size, latent_dim)."""
  shape = (batch_size, config.latent_dim)
  if config.latent_dist == "uniform":
    return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
  return jax.random.normal(key, shape)


def sample_labels(key: Array, batch_size: int, config: StepConfig) -> Array | None:
  """Uniform class ids for a conditional generator, None for an unconditional one."""
  if not config.num_classes:
    return None
  return jax.random.randint(key, (batch_size,), 0, config.num_classes)


def apply_net(
  net: NetState, params: Any, inputs: Array, labels: Array | None, *, train: bool, key: Array
) -> tuple[Array, Any]:
  """Runs a network; returns (outputs, updated batch_stats).

  In training mode BatchNorm uses batch statistics and its running averages are
  updated; the 'dropout' stream comes from ``key``.
  """
  variables = {"params": params}
  if net.batch_stats:
    variables["batch_stats"] = net.batch_stats
  if train and net.batch_stats:
    out, updates = net.apply_fn(variables, inputs, labels, train=True, rngs={"dropout": key}, mutable=["batch_stats"])
    return out, updates["batch_stats"]
  out = net.apply_fn(variables, inputs, labels, train=train, rngs={"dropout": key})
  return out, net.batch_stats


def generate(
  state: GANState,
  z: Array,
  labels: Array | None = None,
  *,
  use_ema: bool = True,
  train: bool = False,
  key: Array | None = None,
) -> Array:
  """Samples G(z[, labels]) with the EMA parameters when kept (eval mode by default)."""
  params = state.sampling_params() if use_ema else state.gen.params
  key = jax.random.PRNGKey(0) if key is None else key
  out, _ = apply_net(state.gen, params, z, labels, train=train, key=key)
  return out


@functools.partial(jax.jit, static_argnames=("config", "num_batches", "batch_size"))
def _standing_stats(state: GANState, key: Array, config: StepConfig, num_batches: int, batch_size: int) -> Any:
  params = state.sampling_params()
  labels = (
    jnp.arange(batch_size, dtype=jnp.int32) % config.num_classes  # balanced classes
    if config.num_classes
    else None
  )

  def update(stats, z):
    net = state.gen.replace(batch_stats=stats)
    return apply_net(net, params, z, labels, train=True, key=jax.random.PRNGKey(0))[1]

  zeros = jax.tree.map(jnp.zeros_like, state.gen.batch_stats)
  ones = jax.tree.map(jnp.ones_like, state.gen.batch_stats)
  keys = jax.random.split(key, num_batches)
  z0 = sample_latent(keys[0], batch_size, config)
  first = update(zeros, z0)
  momentum = jax.tree.map(lambda a, b: jnp.mean(b - a), first, update(ones, z0))

  def body(total, k):
    return jax.tree.map(jnp.add, total, update(zeros, sample_latent(k, batch_size, config))), None

  total, _ = jax.lax.scan(body, first, keys[1:])
  return jax.tree.map(lambda t, m: t / (num_batches * (1.0 - m)), total, momentum)


def standing_batch_stats(
  state: GANState, config: StepConfig, key: Array, num_batches: int = 8, batch_size: int = 256
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
  stats = _standing_stats(state, key, config, num_batches, batch_size)
  return state.replace(gen=state.gen.replace(batch_stats=stats))


def _all_finite(*trees: Any) -> Array:
  leaves = [jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]
  return jnp.all(jnp.stack(leaves))


def _keep_if(ok: Array, new: Any, old: Any) -> Any:
  return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def d_step(state: GANState, batch: Batch, key: Array, config: StepConfig) -> tuple[GANState, Metrics]:
  """One discriminator / critic update on a real batch and a fresh fake batch."""
  loss_pair = losses_lib.get_loss(config.loss)
  real = batch["x"]
  labels = batch.get("label")
  batch_size = real.shape[0]
  z_key, g_drop_key, d_drop_key, fake_drop_key, penalty_key = jax.random.split(key, 5)

  if batch_size % config.pack:
    raise ConfigError(f"batch size {batch_size} is not divisible by pack {config.pack}")
  z = sample_latent(z_key, batch_size, config)
  fake, _ = apply_net(state.gen, state.gen.params, z, labels, train=True, key=g_drop_key)
  fake = pack_samples(jax.lax.stop_gradient(fake), config.pack)
  real = pack_samples(real, config.pack)
  disc = state.disc

  def loss_fn(params):
    if disc.batch_stats:
      # BatchNorm: real and fake batches are normalised separately, as in the reference loops.
      real_out, stats = apply_net(disc, params, real, labels, train=True, key=d_drop_key)
      fake_out, stats = apply_net(disc.replace(batch_stats=stats), params, fake, labels, train=True, key=fake_drop_key)
    else:
      # Per-sample networks: one pass over [real; fake] (same maths, half the kernel launches).
      both_labels = None if labels is None else jnp.concatenate([labels, labels])
      both, stats = apply_net(disc, params, jnp.concatenate([real, fake]), both_labels, train=True, key=d_drop_key)
      real_out, fake_out = both[: real.shape[0]], both[real.shape[0] :]
    adv = loss_pair.discriminator(real_out, fake_out, config.real_label)
    loss = adv
    aux = {"d_adv_loss": adv, "d_real_out": jnp.mean(real_out), "d_fake_out": jnp.mean(fake_out)}

    def critic(x):
      return apply_net(disc, params, x, labels, train=True, key=d_drop_key)[0]

    if config.gp_weight:
      gp = regularizers.gradient_penalty(critic, real, fake, penalty_key)
      loss = loss + config.gp_weight * gp
      aux["gradient_penalty"] = gp
    if config.r1_weight:
      r1 = regularizers.r1_penalty(critic, real)
      loss = loss + 0.5 * config.r1_weight * r1
      aux["r1_penalty"] = r1
    return loss, (aux, stats)

  (loss, (aux, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(disc.params)
  new_disc = disc.apply_gradients(grads=grads, batch_stats=stats)
  finite = _all_finite(loss, grads)
  if config.skip_nonfinite:
    new_disc = _keep_if(finite, new_disc, disc)
  metrics = {
    "d_loss": loss,
    "d_grad_norm": optax.tree.norm(grads),
    "d_param_norm": optax.tree.norm(new_disc.params),
    "d_finite": finite,
    **aux,
  }
  return state.replace(disc=new_disc), metrics


def _ema_decay(config: StepConfig, num_updates: Array) -> Array:
  """min(decay, (1 + n) / (10 + n)): the EMA warms up instead of remembering init."""
  n = num_updates.astype(jnp.float32)
  return jnp.minimum(config.ema_decay, (1.0 + n) / (10.0 + n))


def g_step(state: GANState, batch: Batch, key: Array, config: StepConfig) -> tuple[GANState, Metrics]:
  """One generator update; the batch only fixes the batch size.

  Conditional generators get labels drawn uniformly with their own key. The EMA
  of the generator parameters is updated here, inside the compiled step.
  """
  loss_pair = losses_lib.get_loss(config.loss)
  batch_size = batch["x"].shape[0]
  z_key, label_key, g_drop_key, d_drop_key = jax.random.split(key, 4)
  z = sample_latent(z_key, batch_size, config)
  labels = sample_labels(label_key, batch_size, config)
  gen, disc = state.gen, state.disc

  def loss_fn(params):
    fake, stats = apply_net(gen, params, z, labels, train=True, key=g_drop_key)
    fake = pack_samples(fake, config.pack)
    # D runs in training mode as in the reference loops; its statistics updates are dropped.
    fake_out, _ = apply_net(disc, disc.params, fake, labels, train=True, key=d_drop_key)
    loss = loss_pair.generator(fake_out)
    return loss, (stats, jnp.mean(fake_out))

  (loss, (stats, fake_out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(gen.params)
  new_gen = gen.apply_gradients(grads=grads, batch_stats=stats)
  finite = _all_finite(loss, grads)
  if config.skip_nonfinite:
    new_gen = _keep_if(finite, new_gen, gen)
  new_state = state.replace(gen=new_gen)
  if state.ema_params is not None and config.ema_decay:
    decay = _ema_decay(config, new_gen.step)
    ema = optax.incremental_update(new_gen.params, state.ema_params, 1.0 - decay)
    new_state = new_state.replace(ema_params=ema)
  metrics = {
    "g_loss": loss,
    "g_grad_norm": optax.tree.norm(grads),
    "g_param_norm": optax.tree.norm(new_gen.params),
    "g_fake_out": fake_out,
    "g_finite": finite,
  }
  return new_state, metrics


def train_step(state: GANState, batch: Batch, config: StepConfig) -> tuple[GANState, Metrics]:
  """One GAN iteration: ``n_critic`` D updates (scanned), then ``n_gen`` G updates.

  ``batch`` leaves have a leading ``n_critic`` axis. Metrics are averaged over
  the scanned updates; ``finite`` is False if any update saw a NaN/Inf.
  """
  key = jax.random.fold_in(state.key, state.step)
  d_key, g_key = jax.random.split(key)
  d_keys = jax.random.split(d_key, config.n_critic)
  g_keys = jax.random.split(g_key, config.n_gen)

  def d_body(carry, xs):
    sub_batch, sub_key = xs
    return d_step(carry, sub_batch, sub_key, config)

  state, d_metrics = jax.lax.scan(d_body, state, (batch, d_keys))
  g_batch = jax.tree.map(lambda x: x[0], batch)

  def g_body(carry, sub_key):
    return g_step(carry, g_batch, sub_key, config)

  state, g_metrics = jax.lax.scan(g_body, state, g_keys)
  metrics = {}
  for name, value in {**d_metrics, **g_metrics}.items():
    metrics[name] = jnp.all(value) if value.dtype == jnp.bool_ else jnp.mean(value)
  metrics["finite"] = metrics["d_finite"] & metrics["g_finite"]
  if config.loss == "wasserstein":
    metrics["wasserstein_estimate"] = metrics["d_real_out"] - metrics["d_fake_out"]
  return state.replace(step=state.step + 1), metrics


def make_train_step(config: StepConfig, *, state_sharding: Any = None, batch_sharding: Any = None):
  """`train_step` compiled with ``config`` bound and the state donated.

  With shardings (see `jaxgan.parallel`) the state is replicated and the batch
  split over the mesh's data axis.
  """
  fn = functools.partial(train_step, config=config)
  if state_sharding is None:
    return jax.jit(fn, donate_argnums=0)
  return jax.jit(
    fn, donate_argnums=0, in_shardings=(state_sharding, batch_sharding), out_shardings=(state_sharding, None)
  )
