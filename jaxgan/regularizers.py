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
  `add_penalties`. `wgan_gp` and `r1` are the two built in; a user penalty is
  ``Penalty("my_penalty", fn, weight)``.
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
  """

  name: str
  fn: Callable[[GANOutputs, Array], Array]
  weight: Weight = 1.0
  every: int = 1

  def __post_init__(self):
    if self.every < 1:
      raise ConfigError(f"penalty {self.name!r}: every must be >= 1, got {self.every}")
    if not callable(self.weight) and self.weight < 0:
      raise ConfigError(f"penalty {self.name!r}: the weight must be >= 0, got {self.weight}")


def _weight_at(penalty: Penalty, count: Array) -> Any:
  return penalty.weight(count) if callable(penalty.weight) else penalty.weight


def add_penalties(
  loss: Array, penalties: Sequence[Penalty], outputs: GANOutputs, key: Array, count: Array
) -> tuple[Array, dict[str, Array]]:
  """``loss + sum_i w_i(count) * p_i(outputs, key_i)``, and the unweighted values by name.

  Penalty i draws its randomness from ``fold_in(key, i)`` (penalty 0 from
  ``key`` itself), so two penalties never share a key. ``count`` is the
  discriminator's update count before this update.
  """
  aux = {}
  for i, penalty in enumerate(penalties):
    sub_key = key if i == 0 else jax.random.fold_in(key, i)
    weight = _weight_at(penalty, count)
    if penalty.every == 1:
      value = penalty.fn(outputs, sub_key)
    else:
      value = jax.lax.cond(
        count % penalty.every == 0,
        lambda k, fn=penalty.fn: fn(outputs, k).astype(jnp.float32),
        lambda k: jnp.zeros((), jnp.float32),
        sub_key,
      )
      weight = penalty.every * weight
    loss = loss + weight * value
    aux[penalty.name] = value
    if callable(penalty.weight):
      aux[f"{penalty.name}_weight"] = jnp.asarray(weight, jnp.float32)
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
