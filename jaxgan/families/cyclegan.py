"""The CycleGAN family (Zhu et al., 2017): unpaired image-to-image translation.

`State` holds two generators (G: A -> B, F: B -> A), two discriminators (D_A,
D_B) and one `ImagePool` of past fakes per domain. Full objective (Eq. 3, plus
the identity term of Sec. 5.2):

    L = L_GAN(G, D_B) + L_GAN(F, D_A)
        + lambda_a E|F(G(a)) - a| + lambda_b E|G(F(b)) - b|
        + lambda_identity * (lambda_b E|G(b) - b| + lambda_a E|F(a) - a|)

with the least-squares GAN loss: G minimises E[(D_B(G(a)) - 1)^2], D_B
minimises (E[(D_B(b) - 1)^2] + E[D_B(G(a))^2]) / 2 (the paper halves D's
objective).

* `Config`, `init_state`, `train_step` (one joint update of both generators,
  then one joint update of both discriminators on an unpaired batch
  ``{"a": images of A, "b": images of B}``), `sample` (G or F).
* `ImagePool` / `image_pool_query`: Shrivastava et al.'s (2017) history
  buffer, as pure arrays plus a counter, driven by an explicit key.

The two joint updates are `jaxgan.update.update` calls on tuples of networks
(each network keeps its own optimiser state: since Adam acts per parameter,
this equals the reference code's one Adam over both generators, and one over
both discriminators).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxgan import augment, regularizers, steps, update
from jaxgan import losses as losses_lib
from jaxgan.errors import ConfigError
from jaxgan.state import NetState, init_keys, init_net

Array = jax.Array
"""@private The array type of the annotations (`jax.Array`), kept out of the API reference."""
Batch = dict[str, Array]
Metrics = dict[str, Array]

# fold_in tag of the penalties' key (a tag, so runs without penalties keep their keys).
AUGMENT_TAG = 0xA06  # fold_in tag of the augmentation keys (runs without augmentation keep their keys)
PENALTY_TAG = 0x9E4A
DIRECTIONS = ("AtoB", "BtoA")


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


class State(flax.struct.PyTreeNode):
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
class Config(steps.AdversarialConfig):
  """Static settings of the CycleGAN update: `jaxgan.steps.AdversarialConfig` (``loss`` "least_squares", as
  in the paper; ``penalties`` are added to each discriminator's loss) and

  Attributes:
    lambda_a, lambda_b: cycle weights (10).
    lambda_identity: identity weight relative to lambda (0.5; 0 disables it,
      and it needs both domains to have the same channel count).
    jitter: the random jitter of each domain (independently; `jaxgan.augment.Jitter`).
    augment: ``(key, images) -> images`` applied to every image a
      discriminator sees, real and generated (pooled), in both updates
      (DiffAugment, `jaxgan.augment.DiffAugment`). None: off.
  """

  loss: str | losses_lib.GANLoss = "least_squares"
  lambda_a: float = 10.0
  lambda_b: float = 10.0
  lambda_identity: float = 0.5
  jitter: augment.Jitter = augment.Jitter()
  augment: Callable[[Array, Array], Array] | None = None

  def __post_init__(self):
    super().__post_init__()
    if min(self.lambda_a, self.lambda_b, self.lambda_identity) < 0:
      raise ConfigError("lambda_a, lambda_b and lambda_identity must be >= 0")
    stateful = [p.name for p in self.penalties if p.init is not None]
    if stateful:
      raise ConfigError(
        f"CycleGAN keeps no state for penalties {', '.join(stateful)} (two discriminators would need one each): "
        "use them with the GAN family or Pix2Pix, or drop them"
      )

  def generator_scale(self) -> float:
    """The factor on the generator's adversarial terms: 2 for the least-squares loss.

    The paper's G loss is E[(D(G(a)) - 1)^2]; jaxgan's LSGAN generator loss is
    half of it (Mao et al.'s 1/2 convention). D's least-squares loss already
    carries the paper's 1/2.
    """
    return 2.0 if self.loss == "least_squares" else 1.0


def init_state(
  config: Config,
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
) -> State:
  """The initial `State` from one integer seed, with empty pools of ``pool_size`` (keys: `jaxgan.state.init_keys`)."""
  del config  # the state does not depend on the update's settings
  if pool_size < 0:
    raise ConfigError(f"pool_size must be >= 0, got {pool_size}")
  key, keys = init_keys(seed, 4)
  a = jnp.zeros((1,) + tuple(shape_a), jnp.float32)
  b = jnp.zeros((1,) + tuple(shape_b), jnp.float32)
  return State(
    step=jnp.zeros((), jnp.int32),
    key=key,
    g_ab=init_net(generator_ab, g_tx, keys[0], a, None),
    g_ba=init_net(generator_ba, g_tx, keys[1], b, None),
    d_a=init_net(discriminator_a, d_tx, keys[2], a, None),
    d_b=init_net(discriminator_b, d_tx, keys[3], b, None),
    pool_a=ImagePool.create(pool_size, shape_a),
    pool_b=ImagePool.create(pool_size, shape_b),
  )


def train_step(state: State, batch: Batch, config: Config) -> tuple[State, Metrics]:
  """One CycleGAN iteration on an unpaired batch ``{"a": images of A, "b": images of B}``.

  With the iteration key ``fold_in(state.key, state.step)``, as in the
  reference training loop:

  1. jitter a and b (independently);
  2. one update of both generators on the full objective, D_A and D_B fixed
     (in training mode; their statistics updates are dropped);
  3. the fakes G(a), F(b) of step 2 pass through the history pools;
  4. one update of both discriminators, each on its real batch and the
     pooled fakes, plus the penalties.

  Every network pass draws its dropout stream from its own key
  ``fold_in(drop_key, i)``.
  """
  loss_pair = config.gan_loss()
  key = jax.random.fold_in(state.key, state.step)
  ja, jb, pool_a_key, pool_b_key, drop = jax.random.split(key, 5)
  real_a = config.jitter(ja, batch["a"])
  real_b = config.jitter(jb, batch["b"])
  g_ab, g_ba, d_a, d_b = state.g_ab, state.g_ba, state.d_a, state.d_b
  use_identity = config.lambda_identity > 0
  if use_identity and real_a.shape[-1] != real_b.shape[-1]:
    raise ConfigError("the identity loss needs domains with equal channel counts: set lambda_identity=0")
  scale = config.generator_scale()
  if loss_pair.generator_needs_real:
    raise ConfigError("CycleGAN's generator update has no real target images: use a loss without generator_needs_real")

  def run(net, params, stats, x, i):
    return update.apply_network(net, params, x, train=True, key=jax.random.fold_in(drop, i), batch_stats=stats)

  aug_key = jax.random.fold_in(key, AUGMENT_TAG)

  def augmented(x, i):
    return x if config.augment is None else config.augment(jax.random.fold_in(aug_key, i), x)

  def adversarial(d, fake, i):
    def critic(x, i=i):
      return run(d, d.params, d.batch_stats, x, i)[0]

    fake = augmented(fake, i)

    outputs = losses_lib.GANOutputs(real=None, fake=fake, real_logits=None, fake_logits=critic(fake), critic=critic)
    return scale * losses_lib.evaluate_loss(loss_pair.generator, outputs)[0]

  def g_loss_fn(params):
    p_ab, p_ba = params
    s_ab, s_ba = g_ab.batch_stats, g_ba.batch_stats
    fake_b, s_ab = run(g_ab, p_ab, s_ab, real_a, 0)
    rec_a, s_ba = run(g_ba, p_ba, s_ba, fake_b, 1)
    fake_a, s_ba = run(g_ba, p_ba, s_ba, real_b, 2)
    rec_b, s_ab = run(g_ab, p_ab, s_ab, fake_a, 3)
    adv_ab, adv_ba = adversarial(d_b, fake_b, 4), adversarial(d_a, fake_a, 5)
    cycle_a, cycle_b = losses_lib.l1_loss(rec_a, real_a), losses_lib.l1_loss(rec_b, real_b)
    loss = adv_ab + adv_ba + config.lambda_a * cycle_a + config.lambda_b * cycle_b
    aux = {"g_adv_ab": adv_ab, "g_adv_ba": adv_ba, "cycle_a": cycle_a, "cycle_b": cycle_b}
    if use_identity:
      idt_b, s_ab = run(g_ab, p_ab, s_ab, real_b, 6)
      idt_a, s_ba = run(g_ba, p_ba, s_ba, real_a, 7)
      identity_b, identity_a = losses_lib.l1_loss(idt_b, real_b), losses_lib.l1_loss(idt_a, real_a)
      loss = loss + config.lambda_identity * (config.lambda_b * identity_b + config.lambda_a * identity_a)
      aux.update(identity_a=identity_a, identity_b=identity_b)
    return loss, ({**aux, "fakes": (fake_a, fake_b)}, (s_ab, s_ba))

  (new_g_ab, new_g_ba), g_aux, g_metrics = update.update(
    (g_ab, g_ba), g_loss_fn, name="g", skip_nonfinite=config.skip_nonfinite
  )
  fake_a, fake_b = g_aux.pop("fakes")
  pool_a, pooled_a = image_pool_query(state.pool_a, jax.lax.stop_gradient(fake_a), pool_a_key)
  pool_b, pooled_b = image_pool_query(state.pool_b, jax.lax.stop_gradient(fake_b), pool_b_key)
  penalty_key = jax.random.fold_in(key, PENALTY_TAG)

  def d_loss_fn(params):
    totals, aux, stats = [], {}, []
    for j, (name, d, p, real, pooled) in enumerate(
      (("a", d_a, params[0], real_a, pooled_a), ("b", d_b, params[1], real_b, pooled_b))
    ):
      real, pooled = augmented(real, 8 + 2 * j), augmented(pooled, 9 + 2 * j)
      real_out, s = run(d, p, d.batch_stats, real, 8 + 2 * j)
      fake_out, s = run(d, p, s, pooled, 9 + 2 * j)

      def critic(x, d=d, p=p, j=j):
        return run(d, p, d.batch_stats, x, 8 + 2 * j)[0]

      outputs = losses_lib.GANOutputs(
        real=real, fake=pooled, real_logits=real_out, fake_logits=fake_out, critic=critic, step=d.step
      )
      loss, extra = losses_lib.evaluate_loss(loss_pair.discriminator, outputs)
      aux.update(
        {f"d_{name}_loss": loss, f"d_{name}_real_out": jnp.mean(real_out), f"d_{name}_fake_out": jnp.mean(fake_out)}
      )
      aux.update({f"d_{name}_{k}": v for k, v in extra.items()})
      loss, penalties = regularizers.add_penalties(
        loss, config.penalties, outputs, jax.random.fold_in(penalty_key, j), d.step
      )
      aux.update({f"d_{name}_{k}": v for k, v in penalties.items()})
      totals.append(loss)
      stats.append(s)
    return totals[0] + totals[1], (aux, tuple(stats))

  (new_d_a, new_d_b), d_aux, d_metrics = update.update(
    (d_a, d_b), d_loss_fn, name="d", skip_nonfinite=config.skip_nonfinite
  )
  metrics = {**g_metrics, **d_metrics, **g_aux, **d_aux, "pool_a_count": state.pool_a.count.astype(jnp.float32)}
  metrics["finite"] = steps.finite_flag(metrics)
  new_state = state.replace(
    step=state.step + 1, g_ab=new_g_ab, g_ba=new_g_ba, d_a=new_d_a, d_b=new_d_b, pool_a=pool_a, pool_b=pool_b
  )
  return new_state, metrics


def sample(state: State, images: Array, direction: str = "AtoB", *, train: bool = False) -> Array:
  """G(images) for ``direction="AtoB"``, F(images) for ``"BtoA"``."""
  if direction not in DIRECTIONS:
    raise ConfigError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
  net = state.g_ab if direction == "AtoB" else state.g_ba
  return update.apply_network(net, net.params, images, train=train, key=jax.random.PRNGKey(0))[0]
