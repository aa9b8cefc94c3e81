"""Discriminator regularisers: penalties as plug-ins of the D update, and weight clipping.

* The maths: `gradient_penalty` (WGAN-GP) and `r1_penalty` are pure functions
  of a critic function ``f: x -> outputs``, so they work with any network and
  any conditioning (close over the labels).
* Penalties as plug-ins: a `Penalty` is a function of the update's
  `jaxgan.losses.GANOutputs` and a key, a weight (a number, or an optax
  schedule of the discriminator's update count, evaluated inside the compiled
  step) and an optional lazy period: applied every ``every`` discriminator
  updates with its weight multiplied by ``every`` (lazy regularisation,
  Karras et al., 2020, "Analyzing and Improving the Image Quality of
  StyleGAN"). A step adds a sequence of them to the discriminator's loss with
  `add_penalties`. Built in: `wgan_gp`, `r1` (lazy with ``every``), `dragan`
  (Kodali et al., 2017), `bcr` (balanced consistency regularisation, Zhao et
  al., 2021) and `lecam` (Tseng et al., 2021); a user penalty is
  ``Penalty("my_penalty", fn, weight)``.
* Stateful penalties: a `Penalty` with an ``init`` keeps a pytree of its own
  across updates (LeCam's EMA anchors); ``fn`` then takes and returns it. The
  family stores these states in the training state (``GANState.extra``), so
  they are checkpointed and resume bit for bit; `apply_penalties` threads them
  and `initial_states` builds them.
* Weight clipping is an optax `GradientTransformation` to chain after the
  critic's optimiser, as in the WGAN paper's RMSProp + clip loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxgan.errors import ConfigError
from jaxgan.losses import GANOutputs

Array = jax.Array
"""@private The array type of the annotations (`jax.Array`), kept out of the API reference."""


def _per_sample_grad_sq_norms(critic_fn: Callable[[Array], Array], x: Array) -> Array:
  """||d f(x_i) / d x_i||^2 for every sample i of the batch ``x``.

  The critic must treat samples independently (no batch normalisation), which the
  penalised objectives require anyway; then the gradient of sum_i f(x_i) with
  respect to x_i is exactly the per-sample gradient, at the cost of one backward
  pass instead of B.
  """
  grads = jax.grad(lambda inputs: jnp.sum(critic_fn(inputs)))(x)
  return jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1)


def gradient_penalty(
  critic_fn: Callable[[Array], Array], real: Array, fake: Array, key: Array, target: float = 1.0
) -> Array:
  """The two-sided WGAN-GP penalty (Gulrajani et al., 2017, "Improved Training of WGANs").

      GP = E_{x^}[(||grad_{x^} f(x^)||_2 - target)^2],   x^ = eps x + (1 - eps) x~,

  with eps ~ U[0, 1] drawn per sample, x real and x~ generated. Returns GP
  *without* the weight lambda. ``target`` = 1 is the paper's choice.
  """
  eps_shape = (real.shape[0],) + (1,) * (real.ndim - 1)
  eps = jax.random.uniform(key, eps_shape, dtype=real.dtype)
  interpolates = eps * real + (1.0 - eps) * fake
  sq_norms = _per_sample_grad_sq_norms(critic_fn, interpolates)
  # sqrt has an infinite derivative at 0; the tiny offset keeps the gradient finite.
  norms = jnp.sqrt(sq_norms + 1e-12)
  return jnp.mean(jnp.square(norms - target))


def dragan_penalty(
  critic_fn: Callable[[Array], Array], real: Array, key: Array, perturbation: float = 0.5, target: float = 1.0
) -> Array:
  """The DRAGAN penalty (Kodali, Abernethy, Hays & Kira, 2017, "On Convergence and Stability of GANs").

  A gradient penalty in a neighbourhood of the *real* data, where mode
  collapse creates sharp gradients:

      DRAGAN = E[(||grad_{x^} D(x^)||_2 - target)^2],
      x^ = x + alpha (x_p - x),   x_p = x + perturbation * std(x) * u,

  with u ~ U[0, 1) per element, alpha ~ U[0, 1) per sample and std(x) the
  standard deviation of the whole real batch -- the perturbation of the
  authors' code (the paper writes x + delta, delta ~ N(0, cI); the code is what
  produced its results). Returns the value without the weight lambda (10 in
  the paper). Neither x_p nor alpha carries a gradient.
  """
  noise_key, alpha_key = jax.random.split(key)
  flat = real.reshape(-1)
  u = jax.random.uniform(noise_key, flat.shape, dtype=real.dtype).reshape(real.shape)
  perturbed = real + perturbation * jnp.std(real) * u
  alpha = jax.random.uniform(alpha_key, (real.shape[0],) + (1,) * (real.ndim - 1), dtype=real.dtype)
  x_hat = jax.lax.stop_gradient(real + alpha * (perturbed - real))
  norms = jnp.sqrt(_per_sample_grad_sq_norms(critic_fn, x_hat) + 1e-12)
  return jnp.mean(jnp.square(norms - target))


def consistency_penalty(critic_fn: Callable[[Array], Array], x: Array, logits: Array, augmented: Array) -> Array:
  """The consistency term of CR-GAN and bCR (Zhang et al., 2020; Zhao et al., 2021):

      CR = E_x ||D(x) - D(T(x))||^2,

  with ``logits`` = D(x) already computed and ``augmented`` = T(x). Gradients
  flow through both D(x) and D(T(x)), as in the papers. ``x`` only fixes the
  batch; any shape of D's output works (the squared difference is averaged
  over its elements).
  """
  del x
  return jnp.mean(jnp.square(logits - critic_fn(augmented)))


def lecam_penalty(real_logits: Array, fake_logits: Array, anchor_real: Array, anchor_fake: Array,
                  hinged: bool = True) -> Array:  # fmt: skip
  """LeCam regularisation (Tseng, Jiang, Liu, Yang & Yang, 2021, "Regularizing Generative Adversarial Networks
  under Limited Data", Eq. 3):

      R_LC = E_x[||D(x) - alpha_F||^2] + E_z[||D(G(z)) - alpha_R||^2],

  where alpha_R and alpha_F are exponential moving averages of D's mean
  output on real and on generated data (the anchors). ``hinged=True`` is the
  form of the authors' code: only the side past the other anchor is
  penalised, E[relu(D(x) - alpha_F)^2] + E[relu(alpha_R - D(G(z)))^2].
  """
  real_gap = real_logits - anchor_fake
  fake_gap = anchor_real - fake_logits
  if hinged:
    real_gap, fake_gap = jax.nn.relu(real_gap), jax.nn.relu(fake_gap)
  return jnp.mean(jnp.square(real_gap)) + jnp.mean(jnp.square(fake_gap))


def r1_penalty(critic_fn: Callable[[Array], Array], real: Array) -> Array:
  """The R1 penalty (Mescheder et al., 2018, "Which Training Methods for GANs do actually Converge?").

      R1 = E_x[||grad_x D(x)||_2^2]   on real data only.

  Returns R1 without the gamma / 2 factor.
  """
  return jnp.mean(_per_sample_grad_sq_norms(critic_fn, real))


# ---------------------------------------------------------------------------- penalties as plug-ins

Weight = float | Callable[[Array], Array]


@dataclasses.dataclass(frozen=True)
class Penalty:
  """A term  weight(t) * fn(outputs, key)  added to the discriminator's loss.

  Attributes:
    name: the metric the unweighted value is logged under (and ``name_weight``
      for a scheduled weight).
    fn: ``(outputs: GANOutputs, key) -> scalar``, the penalty without its
      weight; ``outputs.critic`` is D as a function of its input.
    weight: a number, or a schedule ``t -> weight`` of the discriminator's
      update count t (any optax schedule), evaluated inside the step.
    every: lazy regularisation: the penalty is computed only on updates with
      ``t % every == 0`` and then weighted by ``every * weight(t)``, so its
      average strength is unchanged (Karras et al., 2020, Sec. 4.1). On the
      other updates its logged value is 0 and it costs nothing.
    init: for a stateful penalty, ``() -> state`` (a pytree of arrays); ``fn``
      is then ``(outputs, key, state) -> (value, new_state)``. The state is
      kept in the training state under the penalty's name (checkpointed).
  """

  name: str
  fn: Callable[..., Any]
  weight: Weight = 1.0
  every: int = 1
  init: Callable[[], Any] | None = None

  def __post_init__(self):
    if self.every < 1:
      raise ConfigError(f"penalty {self.name!r}: every must be >= 1, got {self.every}")
    if not callable(self.weight) and self.weight < 0:
      raise ConfigError(f"penalty {self.name!r}: the weight must be >= 0, got {self.weight}")


def _weight_at(penalty: Penalty, count: Array) -> Any:
  return penalty.weight(count) if callable(penalty.weight) else penalty.weight


def initial_states(penalties: Sequence[Penalty]) -> dict[str, Any]:
  """``{name: init()}`` for the stateful penalties (``{}`` when there is none)."""
  names = [p.name for p in penalties]
  if len(set(names)) != len(names):
    raise ConfigError(f"two penalties share a name ({', '.join(names)}): their metrics and states would collide")
  return {p.name: p.init() for p in penalties if p.init is not None}


def _call(penalty: Penalty, outputs: GANOutputs, key: Array, state: Any) -> tuple[Array, Any]:
  if penalty.init is None:
    return penalty.fn(outputs, key), state
  return penalty.fn(outputs, key, state)


def apply_penalties(
  loss: Array, penalties: Sequence[Penalty], outputs: GANOutputs, key: Array, count: Array, states: dict[str, Any]
) -> tuple[Array, dict[str, Array], dict[str, Any]]:
  """``loss + sum_i w_i(count) * p_i(outputs, key_i)``, the unweighted values by name, and the new states.

  Penalty i draws its randomness from ``fold_in(key, i)`` (penalty 0 from
  ``key`` itself), so two penalties never share a key. ``count`` is the
  discriminator's update count before this update. ``states`` holds the
  stateful penalties' states by name (`initial_states`); a lazy stateful
  penalty keeps its state on the updates it skips.
  """
  aux, new_states = {}, dict(states)
  for i, penalty in enumerate(penalties):
    sub_key = key if i == 0 else jax.random.fold_in(key, i)
    weight = _weight_at(penalty, count)
    state = states.get(penalty.name)
    if penalty.init is not None and state is None:
      raise ConfigError(
        f"penalty {penalty.name!r} keeps a state but the training state holds none: build the state with the "
        "family's init_state(config, ...) for this config"
      )
    if penalty.every == 1:
      value, state = _call(penalty, outputs, sub_key, state)
    else:
      value, state = jax.lax.cond(
        count % penalty.every == 0,
        lambda k, s, p=penalty: (lambda v, s2: (v.astype(jnp.float32), s2))(*_call(p, outputs, k, s)),
        lambda k, s: (jnp.zeros((), jnp.float32), s),
        sub_key,
        state,
      )
      weight = penalty.every * weight
    loss = loss + weight * value
    aux[penalty.name] = value
    if penalty.init is not None:
      new_states[penalty.name] = state
    if callable(penalty.weight):
      aux[f"{penalty.name}_weight"] = jnp.asarray(weight, jnp.float32)
  return loss, aux, new_states


def add_penalties(
  loss: Array, penalties: Sequence[Penalty], outputs: GANOutputs, key: Array, count: Array
) -> tuple[Array, dict[str, Array]]:
  """``loss + sum_i w_i(count) * p_i(outputs, key_i)``, and the unweighted values by name (stateless penalties;
  `apply_penalties` threads the states of stateful ones)."""
  stateful = [p.name for p in penalties if p.init is not None]
  if stateful:
    raise ConfigError(f"penalties {', '.join(stateful)} keep a state: call apply_penalties with their states")
  loss, aux, _ = apply_penalties(loss, penalties, outputs, key, count, {})
  return loss, aux


def wgan_gp(weight: Weight = 10.0, *, target: float = 1.0, every: int = 1) -> Penalty:
  """The WGAN-GP `gradient_penalty` as a plug-in: lambda * E[(||grad D(x^)|| - target)^2] (Gulrajani et al., 2017)."""
  return Penalty(
    "gradient_penalty", lambda o, key: gradient_penalty(o.critic, o.real, o.fake, key, target), weight, every
  )


def r1(gamma: Weight = 10.0, *, every: int = 1) -> Penalty:
  """The R1 penalty as a plug-in: gamma / 2 * E_x[||grad D(x)||^2] on real data (Mescheder et al., 2018).

  ``every=16`` is StyleGAN2's lazy R1.
  """
  weight = (lambda t: 0.5 * gamma(t)) if callable(gamma) else 0.5 * gamma
  return Penalty("r1_penalty", lambda o, key: r1_penalty(o.critic, o.real), weight, every)


def dragan(weight: Weight = 10.0, *, perturbation: float = 0.5, target: float = 1.0, every: int = 1) -> Penalty:
  """The `dragan_penalty` as a plug-in: lambda * E[(||grad D(x^)|| - 1)^2] around the real data
  (Kodali et al., 2017; lambda = 10 and perturbation 0.5 std(x) as in the authors' code)."""
  return Penalty(
    "dragan_penalty", lambda o, key: dragan_penalty(o.critic, o.real, key, perturbation, target), weight, every
  )


def _require_images(x: Array, name: str) -> None:
  if x is None or x.ndim != 4:
    raise ConfigError(f"{name} augments images (B, H, W, C); this run's samples have another shape: drop it")


def bcr(
  real_weight: Weight = 10.0, fake_weight: Weight = 10.0, *, augment: Callable[[Array, Array], Array] | None = None
) -> tuple[Penalty, Penalty]:
  """Balanced consistency regularisation, bCR (Zhao, Zhang, Chen, Singh & Zhang, 2021, "Improved Consistency
  Regularization for GANs", Sec. 3.1), as two plug-ins:

      lambda_real E_x ||D(x) - D(T(x))||^2  +  lambda_fake E_z ||D(G(z)) - D(T(G(z)))||^2

  (`consistency_penalty` on the real and on the generated batch; logged as
  ``bcr_real`` and ``bcr_fake``). ``augment`` is T, ``(key, images) ->
  images``; the default is the papers' flip-and-translate
  (`jaxgan.augment.ConsistencyAugment`). lambda_real = lambda_fake = 10 is the
  paper's CIFAR-10 setting. Images only.
  """
  if augment is None:
    from jaxgan.augment import ConsistencyAugment

    augment = ConsistencyAugment()

  def side(name):
    def fn(o, key):
      x, logits = (o.real, o.real_logits) if name == "real" else (o.fake, o.fake_logits)
      _require_images(x, "bcr")
      return consistency_penalty(o.critic, x, logits, augment(key, x))

    return fn

  return (
    Penalty("bcr_real", side("real"), real_weight),
    Penalty("bcr_fake", side("fake"), fake_weight),
  )


def lecam(weight: Weight = 0.3, *, decay: float = 0.99, start: int = 0, hinged: bool = True,
          every: int = 1) -> Penalty:  # fmt: skip
  """LeCam regularisation (Tseng et al., 2021) as a stateful plug-in: `lecam_penalty` with its anchors.

  State: ``{"anchor_real", "anchor_fake"}`` (float32 scalars), updated on
  every (computed) discriminator update t, BEFORE the penalty is evaluated,
  as in the authors' code:

      alpha_R <- d_t alpha_R + (1 - d_t) mean D(x),   alpha_F <- d_t alpha_F + (1 - d_t) mean D(G(z)),

  with d_t = ``decay`` (0.99 in the paper) for t >= ``start`` and 0 before it
  (the anchors are then the current batch's means; t = 0 always starts
  there). The anchors carry no gradient. ``weight`` lambda: 0.3 for the
  paper's CIFAR runs with DiffAugment is a typical value.
  """
  if not 0.0 <= decay < 1.0:
    raise ConfigError(f"lecam decay must be in [0, 1), got {decay}")

  def init():
    return {"anchor_real": jnp.zeros((), jnp.float32), "anchor_fake": jnp.zeros((), jnp.float32)}

  def fn(o, key, state):
    del key
    d = jnp.where(o.step < max(start, 1), 0.0, decay).astype(jnp.float32)
    real_mean = jax.lax.stop_gradient(jnp.mean(o.real_logits)).astype(jnp.float32)
    fake_mean = jax.lax.stop_gradient(jnp.mean(o.fake_logits)).astype(jnp.float32)
    new = {
      "anchor_real": d * state["anchor_real"] + (1.0 - d) * real_mean,
      "anchor_fake": d * state["anchor_fake"] + (1.0 - d) * fake_mean,
    }
    value = lecam_penalty(o.real_logits, o.fake_logits, new["anchor_real"], new["anchor_fake"], hinged)
    return value, new

  return Penalty("lecam", fn, weight, every, init=init)


class ClipWeightsState(NamedTuple):
  """`clip_weights` keeps no state."""


def clip_weights(clip_value: float) -> optax.GradientTransformation:
  """Weight clipping for the WGAN critic (Arjovsky et al., 2017, Algorithm 1).

  Chain it after the critic's optimiser, e.g.
  ``optax.chain(optax.rmsprop(5e-5), clip_weights(0.01))``: it rewrites the
  incoming update u so that  p + u'  is the projection of  p + u  onto the box
  [-c, c] (``optax.projections.projection_box``).

  Floating point: computing u' = proj(p + u) - p and then p + u' rounds twice:
  u' carries an error of at most ulp(|p| + c) / 2 and the sum adds ulp(c) / 2,
  so p + u' can land a few ulps outside the box (more on the first step, when
  initial weights lie far outside it). Projecting each weight onto the box
  shrunk by 2 ulp(|p| + c) absorbs both roundings, so every critic weight
  provably stays in [-c, c]; once weights are inside the shrink is 2^-22 of c.
  """
  if clip_value <= 0:
    raise ConfigError(f"weight clipping needs a positive clip value, got {clip_value}")

  def init_fn(params: Any) -> ClipWeightsState:
    del params
    return ClipWeightsState()

  def update_fn(updates: Any, state: ClipWeightsState, params: Any = None):
    if params is None:
      raise ValueError("clip_weights needs params: call tx.update(grads, opt_state, params)")

    def projected_update(p, u):
      c = jnp.asarray(clip_value, p.dtype)
      scale = jnp.abs(p) + c
      ulp = jnp.nextafter(scale, jnp.asarray(jnp.inf, p.dtype)) - scale
      bound = c - 2 * ulp
      target = optax.projections.projection_box(p + u, -bound, bound)
      return target - p

    return jax.tree.map(projected_update, params, updates), state

  return optax.GradientTransformation(init_fn, update_fn)
