"""Random-walk Metropolis sampling: the pre-GAN way to sample (seed 002, MCMC).

Metropolis et al. (1953): to sample from pi(x) proportional to exp(log_prob(x))
known only up to a constant, propose x' = x + sigma * eps with eps ~ N(0, I)
(a symmetric proposal, so the Hastings correction cancels) and accept with
probability min(1, pi(x') / pi(x)); otherwise stay at x.  The chain has pi as
its stationary distribution.  Each chain is a ``lax.scan`` with explicit keys,
and many independent chains run in parallel with ``vmap``.

For comparison with GANs on the 2-D toy data, :class:`GaussianMixture` gives
an exact normalised ``log_prob`` (:func:`from_toy` builds it for the very
mixtures of `jaxgan.data.toy` the GANs train on) and responsibility-based
estimates of the mixture weights and means from samples; score the samples with
`jaxgan.metrics.modes.mode_metrics`, as the GAN's are
(``experiments/metropolis.py`` does both).  Random-walk chains mix poorly
between well-separated narrow modes (the motivation for learned samplers in
seed 002): with the ring's std-0.01 modes a chain essentially never leaves its
starting mode, so the weights it recovers are those of the initial points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.data import toy

__all__ = [
  "MetropolisResult",
  "metropolis",
  "GaussianMixture",
  "from_toy",
  "estimate_mixture_params",
]


class MetropolisResult(NamedTuple):
  samples: jax.Array  # (num_samples, n_chains, d)
  accept_rate: jax.Array  # (n_chains,), over the kept segment (after burn-in)


def metropolis(
  key: jax.Array,
  log_prob_fn: Callable[[jax.Array], jax.Array],
  init: jax.Array,
  num_samples: int,
  step_size: Any = 0.5,
  burn_in: int = 0,
  thin: int = 1,
) -> MetropolisResult:
  """Run ``n_chains`` independent random-walk Metropolis chains in parallel.

  Args:
    key: PRNG key; split into one key per chain, then one per step.
    log_prob_fn: unnormalised log-density of one point, ``(d,) -> ()`` (jax-traceable).
    init: (n_chains, d) starting points.
    num_samples: kept samples per chain.
    step_size: proposal standard deviation sigma (scalar or (d,)).
    burn_in: steps discarded first.
    thin: steps per kept sample (``burn_in + num_samples * thin`` steps in all).

  Returns:
    :class:`MetropolisResult` with ``samples`` (num_samples, n_chains, d) and the
    per-chain acceptance rate after burn-in.
  """
  init = jnp.asarray(init, jnp.float32)
  if init.ndim != 2:
    raise ValueError(f"init must be (n_chains, d); got {init.shape}")
  step_size = jnp.asarray(step_size, jnp.float32)

  def kernel(state, k):
    x, lp = state
    k_prop, k_acc = jax.random.split(k)
    prop = x + step_size * jax.random.normal(k_prop, x.shape)
    lp_prop = log_prob_fn(prop)
    accept = jnp.log(jax.random.uniform(k_acc)) < lp_prop - lp
    x = jnp.where(accept, prop, x)
    lp = jnp.where(accept, lp_prop, lp)
    return (x, lp), accept

  def chain(k, x0):
    k_burn, k_run = jax.random.split(k)
    state = (x0, log_prob_fn(x0))
    if burn_in > 0:
      state, _ = jax.lax.scan(kernel, state, jax.random.split(k_burn, burn_in))

    def kept(state, k):
      state, acc = jax.lax.scan(kernel, state, jax.random.split(k, thin))
      return state, (state[0], jnp.sum(acc))

    _, (xs, acc) = jax.lax.scan(kept, state, jax.random.split(k_run, num_samples))
    return xs, jnp.sum(acc) / (num_samples * thin)

  xs, acc = jax.jit(jax.vmap(chain))(jax.random.split(key, init.shape[0]), init)
  return MetropolisResult(jnp.swapaxes(xs, 0, 1), acc)


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
  """sum_k w_k N(mu_k, diag(s_k^2)) in d dimensions.

  Fields: ``means`` (K, d), ``stds`` (K, d) (isotropic stds are broadcast),
  ``weights`` (K,) summing to 1.  Arrays are numpy float64; ``log_prob`` works
  on jax or numpy input of shape (..., d).
  """

  means: np.ndarray
  stds: np.ndarray
  weights: np.ndarray

  @classmethod
  def create(cls, means: Any, stds: Any, weights: Any = None) -> GaussianMixture:
    means = np.asarray(means, np.float64)
    if means.ndim != 2:
      raise ValueError(f"means must be (K, d); got {means.shape}")
    k, d = means.shape
    stds = np.asarray(stds, np.float64)
    if stds.ndim == 1:  # one isotropic std per component
      stds = stds[:, None]
    stds = np.broadcast_to(stds, (k, d)).copy()
    if np.any(stds <= 0):
      raise ValueError("stds must be positive")
    w = np.full((k,), 1.0 / k) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (k,) or np.any(w < 0):
      raise ValueError("weights must be (K,) and non-negative")
    return cls(means, stds, w / w.sum())

  @property
  def n_components(self) -> int:
    return int(self.means.shape[0])

  def component_log_probs(self, x: Any) -> jax.Array:
    """log w_k + log N(x; mu_k, s_k^2), shape (..., K)."""
    x = jnp.asarray(x)
    mu, s = jnp.asarray(self.means, x.dtype), jnp.asarray(self.stds, x.dtype)
    z = (x[..., None, :] - mu) / s
    lognorm = -0.5 * jnp.sum(z * z, axis=-1) - jnp.sum(jnp.log(s), axis=-1) - 0.5 * mu.shape[1] * jnp.log(2 * jnp.pi)
    return lognorm + jnp.log(jnp.asarray(self.weights, x.dtype))

  def log_prob(self, x: Any) -> jax.Array:
    """Normalised log-density, shape (...,)."""
    return jax.nn.logsumexp(self.component_log_probs(x), axis=-1)

  def responsibilities(self, x: Any) -> jax.Array:
    """Posterior component probabilities r_k(x) = w_k N_k(x) / p(x), shape (..., K)."""
    return jax.nn.softmax(self.component_log_probs(x), axis=-1)

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """Exact i.i.d. samples (n, d)."""
    kc, kn = jax.random.split(key)
    comp = jax.random.choice(kc, self.n_components, (n,), p=jnp.asarray(self.weights, jnp.float32))
    eps = jax.random.normal(kn, (n, self.means.shape[1]))
    return jnp.asarray(self.means, jnp.float32)[comp] + jnp.asarray(self.stds, jnp.float32)[comp] * eps


def from_toy(mixture: toy.GaussianMixture2D) -> GaussianMixture:
  """The density of a `jaxgan.data.toy` mixture (ring8, grid25): the same means, std and equal weights."""
  means = mixture.means_array().astype(np.float64)
  return GaussianMixture.create(means, np.full((len(means),), mixture.std))


def estimate_mixture_params(samples: Any, mixture: GaussianMixture) -> tuple[np.ndarray, np.ndarray]:
  """Weights and means implied by samples, via the true responsibilities.

  Since E_{x~p}[r_k(x)] = w_k and E_{x~p}[r_k(x) x] = w_k mu_k exactly, the
  sample averages ``w_k = mean r_k(x)`` and ``mu_k = mean r_k(x) x / w_k`` are
  consistent estimators when the samples come from the mixture (overlapping
  components included).
  """
  x = jnp.asarray(samples, jnp.float32).reshape(-1, mixture.means.shape[1])
  r = np.asarray(mixture.responsibilities(x), np.float64)
  x = np.asarray(x, np.float64)
  w = r.mean(axis=0)
  mu = (r.T @ x) / np.maximum(r.sum(axis=0), 1e-300)[:, None]
  return w, mu
