"""Discriminator regularisers: WGAN-GP gradient penalty, R1, and weight clipping.

The penalties are pure functions of a critic function ``f: x -> outputs`` so they
work with any network and any conditioning (close over the labels). Weight
clipping is an optax `GradientTransformation` to chain after the critic's
optimiser, as in the WGAN paper's RMSProp + clip loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxgan.errors import ConfigError

Array = jax.Array


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
