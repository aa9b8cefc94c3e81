"""Image-to-image translation: Pix2Pix and CycleGAN losses, states and pure steps.

* Pix2Pix (Isola et al., 2017): a `GANState` whose generator maps input images
  to target images and whose discriminator judges (input, image) pairs;
  `pix2pix_train_step` does one D update then one G update on a paired batch
  ``{"a": inputs, "b": targets}``.
* CycleGAN (Zhu et al., 2017): `CycleGANState` holds two generators
  (G: A -> B, F: B -> A), two discriminators (D_A, D_B) and one `ImagePool` of
  past fakes per domain; `cyclegan_train_step` does one joint G update then one
  joint D update on an unpaired batch ``{"a": images of A, "b": images of B}``.
* `image_pool_query`: Shrivastava et al.'s (2017) history buffer, as pure
  arrays plus a counter, driven by an explicit key.
* `random_jitter`: resize-then-random-crop and random mirroring, done *inside
  the jitted step* with the step's key, so augmentation is a pure function of
  (seed, step) and resumes bit-exactly; the input pipeline stays deterministic.
* `constant_then_linear_decay`: the learning-rate schedule of both papers.

Every step takes its randomness from ``fold_in(state.key, state.step)`` and
returns ``(state, metrics)`` with a ``finite`` flag for `jaxgan.trainer.fit`;
`make_pix2pix_train_step` / `make_cyclegan_train_step` jit them with the state
donated.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxgan import losses as losses_lib
from jaxgan.errors import ConfigError
from jaxgan.state import GANState, NetState, init_net

Array = jax.Array
Batch = dict[str, Array]
Metrics = dict[str, Array]

# Tags folded into the base key for network initialisation (never equal to a step).
_INIT_TAG = 0x7FFFFFFF


# ---------------------------------------------------------------------------
# Learning-rate schedule and augmentation


def constant_then_linear_decay(lr: float, constant_steps: int, decay_steps: int) -> optax.Schedule:
  """``lr`` for ``constant_steps`` updates, then linear decay to 0 over ``decay_steps``.

  lr(t) = lr                                         for t <= constant_steps
        = lr * (1 - (t - constant_steps) / decay_steps)   until it reaches 0,

  as in CycleGAN ("keep the same learning rate for the first 100 epochs and
  linearly decay the rate to zero over the next 100 epochs"), counted in
  optimiser updates. ``decay_steps = 0`` keeps ``lr`` constant.
  """
  if constant_steps < 0 or decay_steps < 0:
    raise ConfigError(f"constant_steps and decay_steps must be >= 0, got {constant_steps}, {decay_steps}")
  if decay_steps == 0:
    return optax.constant_schedule(lr)
  return optax.linear_schedule(lr, 0.0, decay_steps, transition_begin=constant_steps)


def default_jitter_size(image_size: int) -> int:
  """The Pix2Pix/CycleGAN jitter resolution scaled to ``image_size``: 286/256 of it.

  256 -> 286, 128 -> 143, 64 -> 72, 32 -> 36.
  """
  return int(round(image_size * 286 / 256))


JITTER_METHODS = ("bilinear", "nearest")


def random_jitter(key: Array, images: Array, jitter_size: int, flip: bool, method: str = "bilinear") -> Array:
  """Random jitter of Isola et al. (2017, appendix 6.2): resize an (H, W) batch to
  ``jitter_size`` x ``jitter_size``, crop a random H x W window per example, and
  mirror each example left-right with probability 1/2.

  ``method`` is the resize interpolation: "bilinear" (as for photos), or
  "nearest", which keeps binary images (e.g. 2-px outlines at 32 px) crisp
  where bilinear up-sampling would blur them into gray.
  ``jitter_size = 0`` skips the resize/crop and ``flip = False`` the mirror.
  Paired data must be jittered as one tensor (inputs and targets
  concatenated on channels) so both get the same crop and flip.
  """
  b, h, w, c = images.shape
  crop_key, flip_key = jax.random.split(key)
  if jitter_size:
    if jitter_size < max(h, w):
      raise ConfigError(f"jitter_size {jitter_size} is smaller than the {h}x{w} images")
    if method not in JITTER_METHODS:
      raise ConfigError(f"unknown jitter method {method!r}: choose one of {', '.join(JITTER_METHODS)}")
    big = jax.image.resize(images, (b, jitter_size, jitter_size, c), method=method)
    ky, kx = jax.random.split(crop_key)
    top = jax.random.randint(ky, (b,), 0, jitter_size - h + 1)
    left = jax.random.randint(kx, (b,), 0, jitter_size - w + 1)
    images = jax.vmap(lambda im, t, left_: jax.lax.dynamic_slice(im, (t, left_, 0), (h, w, c)))(big, top, left)
  if flip:
    mirror = jax.random.bernoulli(flip_key, 0.5, (b,))
    images = jnp.where(mirror[:, None, None, None], images[:, :, ::-1], images)
  return images


# ---------------------------------------------------------------------------
# Shared helpers


def _run(net: NetState, params: Any, stats: Any, x: Array, *, train: bool, key: Array) -> tuple[Array, Any]:
  """Applies a network with explicit BatchNorm statistics; returns (output, new statistics).

  ``stats`` is ``{}`` for networks without BatchNorm (instance norm keeps none).
  """
  variables = {"params": params}
  if stats:
    variables["batch_stats"] = stats
  if train and stats:
    out, updates = net.apply_fn(variables, x, None, train=True, rngs={"dropout": key}, mutable=["batch_stats"])
    return out, updates["batch_stats"]
  return net.apply_fn(variables, x, None, train=train, rngs={"dropout": key}), stats


def _all_finite(*trees: Any) -> Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]))


def _keep_if(ok: Array, new: Any, old: Any) -> Any:
  return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def mean_abs(x: Array, y: Array) -> Array:
  """L1 distance mean |x - y| over every element (the papers' L1 losses)."""
  return jnp.mean(jnp.abs(x - y))


# ---------------------------------------------------------------------------
# Pix2Pix


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig:
  """Static settings of the Pix2Pix update (hashable: a jit static argument).

  The objective (Isola et al., 2017, Eq. 4) is
  G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G), with
  L_L1 = E ||y - G(x)||_1 and the non-saturating generator loss (G maximises
  log D(x, G(x))); D's loss is halved ("we divide the objective by 2 while
  optimizing D, which slows down the rate at which D learns relative to G").

  Attributes:
    loss: adversarial loss name in `jaxgan.losses.LOSSES`; "non_saturating"
      is the paper's sigmoid cross-entropy on every patch.
    l1_weight: lambda (100).
    d_loss_scale: factor on D's loss (0.5).
    real_label: D's target for real pairs (1.0).
    jitter_size: resize-then-crop size of `random_jitter` (0: none).
    jitter_method: its resize interpolation, "bilinear" or "nearest".
    flip: random mirroring.
    skip_nonfinite: drop an update whose loss or gradients are NaN/Inf.
  """

  loss: str = "non_saturating"
  l1_weight: float = 100.0
  d_loss_scale: float = 0.5
  real_label: float = 1.0
  jitter_size: int = 0
  jitter_method: str = "bilinear"
  flip: bool = False
  skip_nonfinite: bool = False

  def __post_init__(self):
    losses_lib.get_loss(self.loss)
    if self.l1_weight < 0 or self.d_loss_scale <= 0:
      raise ConfigError("l1_weight must be >= 0 and d_loss_scale > 0")
    if self.jitter_size < 0:
      raise ConfigError(f"jitter_size must be >= 0, got {self.jitter_size}")
    if self.jitter_method not in JITTER_METHODS:
      raise ConfigError(f"unknown jitter_method {self.jitter_method!r}: choose one of {', '.join(JITTER_METHODS)}")


def create_pix2pix_state(
  *,
  seed: int,
  generator,
  discriminator,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  input_shape: tuple[int, int, int],
  target_channels: int,
) -> GANState:
  """The initial Pix2Pix `GANState`: G on (H, W, C_in) inputs, D on (H, W, C_in + C_out) pairs.

  Initialisation keys are folded from ``PRNGKey(seed)`` under a fixed tag, so
  training keys ``fold_in(key, step)`` never reuse them.
  """
  key = jax.random.PRNGKey(seed)
  g_key, d_key = jax.random.split(jax.random.fold_in(key, _INIT_TAG))
  x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  pair = jnp.zeros((1,) + tuple(input_shape[:2]) + (input_shape[2] + target_channels,), jnp.float32)
  gen = init_net(generator, g_tx, g_key, x, None)
  disc = init_net(discriminator, d_tx, d_key, pair, None)
  return GANState(step=jnp.zeros((), jnp.int32), key=key, gen=gen, disc=disc)


def jitter_pair(
  key: Array, inputs: Array, targets: Array, jitter_size: int, flip: bool, method: str = "bilinear"
) -> tuple[Array, Array]:
  """`random_jitter` applied identically to aligned inputs and targets."""
  if not jitter_size and not flip:
    return inputs, targets
  both = random_jitter(key, jnp.concatenate([inputs, targets], axis=-1), jitter_size, flip, method)
  return both[..., : inputs.shape[-1]], both[..., inputs.shape[-1] :]


def pix2pix_train_step(state: GANState, batch: Batch, config: Pix2PixConfig) -> tuple[GANState, Metrics]:
  """One Pix2Pix iteration on a paired batch ``{"a": inputs x, "b": targets y}``.

  With the iteration key ``fold_in(state.key, state.step)``:

  1. jitter (x, y) jointly (same crop and flip);
  2. G(x) in training mode (dropout on, BatchNorm on batch statistics);
  3. D update on  d_loss_scale * [BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)]  (D's
     real and fake passes normalised separately, as in the reference code);
  4. G update on  BCE(D'(x, G(x)), 1) + lambda * mean|y - G(x)|  against the
     updated D', with the same dropout mask as in step 2.
  """
  loss_pair = losses_lib.get_loss(config.loss)
  key = jax.random.fold_in(state.key, state.step)
  jitter_key, g_drop, d_real_drop, d_fake_drop, dg_drop = jax.random.split(key, 5)
  x, y = jitter_pair(jitter_key, batch["a"], batch["b"], config.jitter_size, config.flip, config.jitter_method)
  gen, disc = state.gen, state.disc

  fake, _ = _run(gen, gen.params, gen.batch_stats, x, train=True, key=g_drop)
  fake = jax.lax.stop_gradient(fake)
  real_pair = jnp.concatenate([x, y], axis=-1)
  fake_pair = jnp.concatenate([x, fake], axis=-1)

  def d_loss_fn(params):
    real_out, stats = _run(disc, params, disc.batch_stats, real_pair, train=True, key=d_real_drop)
    fake_out, stats = _run(disc, params, stats, fake_pair, train=True, key=d_fake_drop)
    adv = loss_pair.discriminator(real_out, fake_out, config.real_label)
    aux = {"d_real_prob": jnp.mean(jax.nn.sigmoid(real_out)), "d_fake_prob": jnp.mean(jax.nn.sigmoid(fake_out))}
    return config.d_loss_scale * adv, (aux, stats)

  (d_loss, (d_aux, d_stats)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(disc.params)
  new_disc = disc.apply_gradients(grads=d_grads, batch_stats=d_stats)
  d_finite = _all_finite(d_loss, d_grads)
  if config.skip_nonfinite:
    new_disc = _keep_if(d_finite, new_disc, disc)

  def g_loss_fn(params):
    out, stats = _run(gen, params, gen.batch_stats, x, train=True, key=g_drop)
    # D in training mode as in the reference loop; its statistics updates are dropped.
    fake_out, _ = _run(
      new_disc, new_disc.params, new_disc.batch_stats, jnp.concatenate([x, out], axis=-1), train=True, key=dg_drop
    )
    adv = loss_pair.generator(fake_out)
    l1 = mean_abs(out, y)
    return adv + config.l1_weight * l1, (stats, adv, l1)

  (g_loss, (g_stats, g_adv, g_l1)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(gen.params)
  new_gen = gen.apply_gradients(grads=g_grads, batch_stats=g_stats)
  g_finite = _all_finite(g_loss, g_grads)
  if config.skip_nonfinite:
    new_gen = _keep_if(g_finite, new_gen, gen)

  metrics = {
    "d_loss": d_loss,
    "g_loss": g_loss,
    "g_adv_loss": g_adv,
    "g_l1": g_l1,
    "d_grad_norm": optax.tree.norm(d_grads),
    "g_grad_norm": optax.tree.norm(g_grads),
    "d_finite": d_finite,
    "g_finite": g_finite,
    "finite": d_finite & g_finite,
    **d_aux,
  }
  return state.replace(step=state.step + 1, gen=new_gen, disc=new_disc), metrics


def pix2pix_translate(state: GANState, inputs: Array, *, train: bool = False, key: Array | None = None) -> Array:
  """G(inputs). ``train=False``: no dropout, BatchNorm running averages.

  ``train=True`` runs G "in exactly the same manner as during the training
  phase" (dropout on, statistics of the test batch), the paper's test-time
  choice; the running statistics are not updated.
  """
  key = jax.random.PRNGKey(0) if key is None else key
  return _run(state.gen, state.gen.params, state.gen.batch_stats, inputs, train=train, key=key)[0]


def make_pix2pix_train_step(config: Pix2PixConfig, *, state_sharding: Any = None, batch_sharding: Any = None):
  """`pix2pix_train_step` jitted with ``config`` bound and the state donated."""
  return _jit(functools.partial(pix2pix_train_step, config=config), state_sharding, batch_sharding)


def _jit(fn, state_sharding, batch_sharding):
  if state_sharding is None:
    return jax.jit(fn, donate_argnums=0)
  return jax.jit(
    fn, donate_argnums=0, in_shardings=(state_sharding, batch_sharding), out_shardings=(state_sharding, None)
  )


# ---------------------------------------------------------------------------
# Image history pool


class ImagePool(flax.struct.PyTreeNode):
  """A history of generated images (Shrivastava et al., 2017), as arrays.

  Attributes:
    images: (pool_size, H, W, C) stored images (slots >= ``count`` are unused).
    count: number of filled slots, int32 scalar.
  """

  images: Array
  count: Array

  @classmethod
  def create(cls, pool_size: int, image_shape: tuple[int, ...]) -> ImagePool:
    return cls(images=jnp.zeros((pool_size,) + tuple(image_shape), jnp.float32), count=jnp.zeros((), jnp.int32))

  @property
  def size(self) -> int:
    return self.images.shape[0]


def image_pool_query(pool: ImagePool, images: Array, key: Array) -> tuple[ImagePool, Array]:
  """Passes a batch of new fakes through the history pool; returns (pool, images for D).

  Image by image (a `lax.scan` over the batch, one subkey each), as in the
  CycleGAN reference code: while the pool holds fewer than ``pool_size``
  images the new image is stored and returned; once full, with probability
  1/2 a uniformly chosen stored image is returned and replaced by the new
  one, otherwise the new image is returned and the pool is unchanged. D thus
  sees, in expectation, half fresh fakes and half fakes from earlier
  generators, which damps oscillation. ``pool_size = 0`` returns ``images``.
  """
  if pool.size == 0:
    return pool, images
  keys = jax.random.split(key, images.shape[0])

  def body(carry, xs):
    stored, count = carry
    image, k = xs
    coin_key, slot_key = jax.random.split(k)
    not_full = count < pool.size
    use_stored = jnp.logical_and(~not_full, jax.random.uniform(coin_key) < 0.5)
    slot = jnp.where(not_full, count, jax.random.randint(slot_key, (), 0, pool.size))
    old = stored[slot]
    out = jnp.where(use_stored, old, image)
    write = jnp.logical_or(not_full, use_stored)
    stored = stored.at[slot].set(jnp.where(write, image, old))
    return (stored, count + not_full.astype(jnp.int32)), out

  (stored, count), out = jax.lax.scan(body, (pool.images, pool.count), (images.astype(jnp.float32), keys))
  return ImagePool(images=stored, count=count), out


# ---------------------------------------------------------------------------
# CycleGAN


class CycleGANState(flax.struct.PyTreeNode):
  """The whole CycleGAN training state (one checkpointable pytree).

  Attributes:
    step: iterations done; the iteration key is ``fold_in(key, step)``.
    key: the run's base PRNG key.
    g_ab: G: A -> B.
    g_ba: F: B -> A.
    d_a: D_A, judges images of A (real vs F(b)).
    d_b: D_B, judges images of B (real vs G(a)).
    pool_a: history of generated A images (F's outputs) shown to D_A.
    pool_b: history of generated B images (G's outputs) shown to D_B.
  """

  step: Array
  key: Array
  g_ab: NetState
  g_ba: NetState
  d_a: NetState
  d_b: NetState
  pool_a: ImagePool
  pool_b: ImagePool


@dataclasses.dataclass(frozen=True)
class CycleGANConfig:
  """Static settings of the CycleGAN update (Zhu et al., 2017).

  Full objective (Eq. 3, plus the identity term of Sec. 5.2):

      L = L_GAN(G, D_B) + L_GAN(F, D_A)
          + lambda_a E|F(G(a)) - a| + lambda_b E|G(F(b)) - b|
          + lambda_identity * (lambda_b E|G(b) - b| + lambda_a E|F(a) - a|)

  with the least-squares GAN loss: G minimises E[(D_B(G(a)) - 1)^2], D_B
  minimises (E[(D_B(b) - 1)^2] + E[D_B(G(a))^2]) / 2 (the paper halves D's
  objective).

  Attributes:
    loss: adversarial loss in `jaxgan.losses.LOSSES` ("least_squares").
    lambda_a, lambda_b: cycle weights (10).
    lambda_identity: identity weight relative to lambda (0.5; 0 disables it,
      and it needs both domains to have the same channel count).
    real_label: D's target for real images (1.0).
    jitter_size, jitter_method, flip: `random_jitter` of each domain (independently).
    skip_nonfinite: drop an update whose loss or gradients are NaN/Inf.
  """

  loss: str = "least_squares"
  lambda_a: float = 10.0
  lambda_b: float = 10.0
  lambda_identity: float = 0.5
  real_label: float = 1.0
  jitter_size: int = 0
  jitter_method: str = "bilinear"
  flip: bool = False
  skip_nonfinite: bool = False

  def __post_init__(self):
    losses_lib.get_loss(self.loss)
    if min(self.lambda_a, self.lambda_b, self.lambda_identity) < 0:
      raise ConfigError("lambda_a, lambda_b and lambda_identity must be >= 0")
    if self.jitter_size < 0:
      raise ConfigError(f"jitter_size must be >= 0, got {self.jitter_size}")
    if self.jitter_method not in JITTER_METHODS:
      raise ConfigError(f"unknown jitter_method {self.jitter_method!r}: choose one of {', '.join(JITTER_METHODS)}")


def create_cyclegan_state(
  *,
  seed: int,
  generator_ab,
  generator_ba,
  discriminator_a,
  discriminator_b,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  shape_a: tuple[int, int, int],
  shape_b: tuple[int, int, int],
  pool_size: int = 50,
) -> CycleGANState:
  """The initial `CycleGANState` from one integer seed, with empty pools of ``pool_size``.

  Each network gets its own optimiser state; since Adam acts per parameter,
  this equals the reference code's one Adam over both generators (and one
  over both discriminators).
  """
  if pool_size < 0:
    raise ConfigError(f"pool_size must be >= 0, got {pool_size}")
  key = jax.random.PRNGKey(seed)
  keys = jax.random.split(jax.random.fold_in(key, _INIT_TAG), 4)
  a = jnp.zeros((1,) + tuple(shape_a), jnp.float32)
  b = jnp.zeros((1,) + tuple(shape_b), jnp.float32)
  return CycleGANState(
    step=jnp.zeros((), jnp.int32),
    key=key,
    g_ab=init_net(generator_ab, g_tx, keys[0], a, None),
    g_ba=init_net(generator_ba, g_tx, keys[1], b, None),
    d_a=init_net(discriminator_a, d_tx, keys[2], a, None),
    d_b=init_net(discriminator_b, d_tx, keys[3], b, None),
    pool_a=ImagePool.create(pool_size, shape_a),
    pool_b=ImagePool.create(pool_size, shape_b),
  )


def cyclegan_train_step(state: CycleGANState, batch: Batch, config: CycleGANConfig) -> tuple[CycleGANState, Metrics]:
  """One CycleGAN iteration on an unpaired batch ``{"a": images of A, "b": images of B}``.

  With the iteration key ``fold_in(state.key, state.step)``, as in the
  reference training loop:

  1. jitter a and b (independently);
  2. one update of both generators on the full objective (see
     `CycleGANConfig`), D_A and D_B fixed;
  3. the fakes G(a), F(b) of step 2 pass through the history pools;
  4. one update of both discriminators, each on its real batch and the
     pooled fakes.
  """
  loss_pair = losses_lib.get_loss(config.loss)
  key = jax.random.fold_in(state.key, state.step)
  ja, jb, pool_a_key, pool_b_key, drop = jax.random.split(key, 5)
  real_a = random_jitter(ja, batch["a"], config.jitter_size, config.flip, config.jitter_method)
  real_b = random_jitter(jb, batch["b"], config.jitter_size, config.flip, config.jitter_method)
  g_ab, g_ba, d_a, d_b = state.g_ab, state.g_ba, state.d_a, state.d_b
  use_identity = config.lambda_identity > 0
  if use_identity and real_a.shape[-1] != real_b.shape[-1]:
    raise ConfigError("the identity loss needs domains with equal channel counts: set lambda_identity=0")

  # The paper's G loss is E[(D(G(a)) - 1)^2]; jaxgan's LSGAN generator loss is
  # half of it (Mao et al.'s 1/2 convention), hence the factor 2 for least squares.
  adv_scale = 2.0 if config.loss == "least_squares" else 1.0

  def g_loss_fn(params):
    p_ab, p_ba = params
    s_ab, s_ba = g_ab.batch_stats, g_ba.batch_stats
    fake_b, s_ab = _run(g_ab, p_ab, s_ab, real_a, train=True, key=drop)
    rec_a, s_ba = _run(g_ba, p_ba, s_ba, fake_b, train=True, key=drop)
    fake_a, s_ba = _run(g_ba, p_ba, s_ba, real_b, train=True, key=drop)
    rec_b, s_ab = _run(g_ab, p_ab, s_ab, fake_a, train=True, key=drop)
    adv_ab = adv_scale * loss_pair.generator(_run(d_b, d_b.params, d_b.batch_stats, fake_b, train=True, key=drop)[0])
    adv_ba = adv_scale * loss_pair.generator(_run(d_a, d_a.params, d_a.batch_stats, fake_a, train=True, key=drop)[0])
    cycle_a, cycle_b = mean_abs(rec_a, real_a), mean_abs(rec_b, real_b)
    loss = adv_ab + adv_ba + config.lambda_a * cycle_a + config.lambda_b * cycle_b
    aux = {"g_adv_ab": adv_ab, "g_adv_ba": adv_ba, "cycle_a": cycle_a, "cycle_b": cycle_b}
    if use_identity:
      idt_b, s_ab = _run(g_ab, p_ab, s_ab, real_b, train=True, key=drop)
      idt_a, s_ba = _run(g_ba, p_ba, s_ba, real_a, train=True, key=drop)
      identity_b, identity_a = mean_abs(idt_b, real_b), mean_abs(idt_a, real_a)
      loss = loss + config.lambda_identity * (config.lambda_b * identity_b + config.lambda_a * identity_a)
      aux.update(identity_a=identity_a, identity_b=identity_b)
    return loss, (aux, (s_ab, s_ba), (fake_a, fake_b))

  (g_loss, (g_aux, (s_ab, s_ba), (fake_a, fake_b))), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
    (g_ab.params, g_ba.params)
  )
  new_g_ab = g_ab.apply_gradients(grads=g_grads[0], batch_stats=s_ab)
  new_g_ba = g_ba.apply_gradients(grads=g_grads[1], batch_stats=s_ba)
  g_finite = _all_finite(g_loss, g_grads)
  if config.skip_nonfinite:
    new_g_ab, new_g_ba = _keep_if(g_finite, (new_g_ab, new_g_ba), (g_ab, g_ba))

  pool_a, pooled_a = image_pool_query(state.pool_a, jax.lax.stop_gradient(fake_a), pool_a_key)
  pool_b, pooled_b = image_pool_query(state.pool_b, jax.lax.stop_gradient(fake_b), pool_b_key)

  def d_loss_fn(params):
    p_a, p_b = params
    real_out_a, s_a = _run(d_a, p_a, d_a.batch_stats, real_a, train=True, key=drop)
    fake_out_a, s_a = _run(d_a, p_a, s_a, pooled_a, train=True, key=drop)
    real_out_b, s_b = _run(d_b, p_b, d_b.batch_stats, real_b, train=True, key=drop)
    fake_out_b, s_b = _run(d_b, p_b, s_b, pooled_b, train=True, key=drop)
    # losses_lib's least-squares D loss already carries the paper's 1/2.
    loss_a = loss_pair.discriminator(real_out_a, fake_out_a, config.real_label)
    loss_b = loss_pair.discriminator(real_out_b, fake_out_b, config.real_label)
    aux = {
      "d_a_loss": loss_a,
      "d_b_loss": loss_b,
      "d_a_real_out": jnp.mean(real_out_a),
      "d_a_fake_out": jnp.mean(fake_out_a),
      "d_b_real_out": jnp.mean(real_out_b),
      "d_b_fake_out": jnp.mean(fake_out_b),
    }
    return loss_a + loss_b, (aux, (s_a, s_b))

  (d_loss, (d_aux, (s_a, s_b))), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)((d_a.params, d_b.params))
  new_d_a = d_a.apply_gradients(grads=d_grads[0], batch_stats=s_a)
  new_d_b = d_b.apply_gradients(grads=d_grads[1], batch_stats=s_b)
  d_finite = _all_finite(d_loss, d_grads)
  if config.skip_nonfinite:
    new_d_a, new_d_b = _keep_if(d_finite, (new_d_a, new_d_b), (d_a, d_b))

  metrics = {
    "g_loss": g_loss,
    "d_loss": d_loss,
    **g_aux,
    **d_aux,
    "g_grad_norm": optax.tree.norm(g_grads),
    "d_grad_norm": optax.tree.norm(d_grads),
    "pool_a_count": state.pool_a.count.astype(jnp.float32),
    "g_finite": g_finite,
    "d_finite": d_finite,
    "finite": g_finite & d_finite,
  }
  new_state = state.replace(
    step=state.step + 1, g_ab=new_g_ab, g_ba=new_g_ba, d_a=new_d_a, d_b=new_d_b, pool_a=pool_a, pool_b=pool_b
  )
  return new_state, metrics


def cyclegan_translate(state: CycleGANState, images: Array, direction: str = "AtoB", *, train: bool = False) -> Array:
  """G(images) for ``direction="AtoB"``, F(images) for ``"BtoA"``."""
  if direction not in ("AtoB", "BtoA"):
    raise ConfigError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
  net = state.g_ab if direction == "AtoB" else state.g_ba
  return _run(net, net.params, net.batch_stats, images, train=train, key=jax.random.PRNGKey(0))[0]


def make_cyclegan_train_step(config: CycleGANConfig, *, state_sharding: Any = None, batch_sharding: Any = None):
  """`cyclegan_train_step` jitted with ``config`` bound and the state donated."""
  return _jit(functools.partial(cyclegan_train_step, config=config), state_sharding, batch_sharding)
