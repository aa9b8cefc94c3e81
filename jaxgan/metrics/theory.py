"""Numerical checks of the GAN theory (Goodfellow et al., "Generative
Adversarial Nets", NeurIPS 2014, Proposition 1 and Theorem 1), as derived in the
seed notes (000: optimal discriminator and JSD; 002: minimax = JSD).

Value function, for data density p = p_data and generator density q = p_g::

    V(D, G) = E_{x~p}[log D(x)] + E_{x~q}[log(1 - D(x))]
            = integral p(x) log D(x) + q(x) log(1 - D(x)) dx.

Proposition 1.  For fixed G the integrand a log y + b log(1 - y) (a = p(x),
b = q(x)) is maximised pointwise at y = a / (a + b), so::

    D*(x) = p(x) / (p(x) + q(x)),    i.e. logit D*(x) = log p(x) - log q(x).

Theorem 1.  Plugging D* in, with m = (p + q) / 2::

    C(G) = V(D*, G) = KL(p || m) + KL(q || m) - log 4 = -log 4 + 2 JSD(p || q),

which is minimal (= -log 4) iff q = p, where D* = 1/2.

This module gives 1-D Gaussian densities, D* in logit form, V(D, G) and JSD by
adaptive quadrature (``scipy.integrate.quad``, float64), and a tiny jitted
flax/optax MLP discriminator trained on fresh samples every step with the
discriminator's GAN objective (binary cross-entropy, real = 1, fake = 0) so
one can check that it converges to D*.  ``tests/test_theory.py`` runs these
checks; see ``docs/theory.md``.

Discriminators are passed around as *logit* functions l(x) (D = sigmoid(l))
so log D = log_sigmoid(l) and log(1 - D) = log_sigmoid(-l) stay accurate in the
tails, where D* is extremely close to 0 or 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import integrate
from scipy.special import expit, log_expit

__all__ = [
  "Normal1D",
  "optimal_discriminator",
  "optimal_logit",
  "gan_value",
  "kl_divergence",
  "jensen_shannon_divergence",
  "optimal_value",
  "MLPDiscriminator",
  "train_discriminator",
]

LogDensity = Callable[[np.ndarray], np.ndarray]
LogitFn = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Normal1D:
  """N(mean, std^2) on the real line: float64 ``logpdf`` / ``pdf`` and jax ``sample``."""

  mean: float
  std: float

  def logpdf(self, x: Any) -> np.ndarray:
    z = (np.asarray(x, np.float64) - self.mean) / self.std
    return -0.5 * z * z - np.log(self.std) - 0.5 * np.log(2.0 * np.pi)

  def pdf(self, x: Any) -> np.ndarray:
    return np.exp(self.logpdf(x))

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    return self.mean + self.std * jax.random.normal(key, (n,))

  def support(self, n_std: float = 40.0) -> tuple[float, float]:
    """Interval outside which the density is below exp(-n_std^2 / 2) (negligible)."""
    return self.mean - n_std * self.std, self.mean + n_std * self.std


def optimal_logit(logp_data: LogDensity, logp_g: LogDensity) -> LogitFn:
  """logit D*(x) = log p_data(x) - log p_g(x)."""
  return lambda x: logp_data(x) - logp_g(x)


def optimal_discriminator(logp_data: LogDensity, logp_g: LogDensity) -> Callable[[Any], np.ndarray]:
  """D*(x) = p_data(x) / (p_data(x) + p_g(x))  (Goodfellow et al. 2014, Prop. 1)."""
  logit = optimal_logit(logp_data, logp_g)
  return lambda x: expit(logit(np.asarray(x, np.float64)))


def _interval(lo_hi: tuple[float, float] | None, *dists: Normal1D) -> tuple[float, float]:
  if lo_hi is not None:
    return lo_hi
  if not dists or not all(isinstance(d, Normal1D) for d in dists):
    raise ValueError("give an integration interval (lo, hi)")
  los, his = zip(*(d.support() for d in dists))
  return min(los), max(his)


def _quad(f: Callable[[float], float], lo: float, hi: float, points: Any = None, epsabs: float = 1e-13) -> float:
  val, _ = integrate.quad(f, lo, hi, epsabs=epsabs, epsrel=epsabs * 10, limit=500, points=points)
  return float(val)


def gan_value(
  logit_fn: LogitFn,
  logp_data: LogDensity,
  logp_g: LogDensity,
  interval: tuple[float, float],
  points: Any = None,
  epsabs: float = 1e-13,
) -> float:
  """V(D, G) = integral p log D + q log(1 - D) dx by adaptive quadrature, D = sigmoid(logit_fn).

  ``logit_fn`` receives a float64 array of shape (1,); ``points`` are optional
  break points for ``quad`` (e.g. the two means).  For a float32 network
  discriminator use a looser ``epsabs`` (e.g. 1e-9): its logits are only
  piecewise-smooth at float32 resolution.
  """

  def integrand(x: float) -> float:
    xa = np.asarray([x], np.float64)
    logit = np.asarray(logit_fn(xa), np.float64).reshape(-1)[0]
    p, q = np.exp(logp_data(xa)[0]), np.exp(logp_g(xa)[0])
    return p * log_expit(logit) + q * log_expit(-logit)

  return _quad(integrand, *interval, points=points, epsabs=epsabs)


def kl_divergence(logp: LogDensity, logq: LogDensity, interval: tuple[float, float], points: Any = None) -> float:
  """KL(p || q) = integral p (log p - log q) dx by quadrature."""

  def integrand(x: float) -> float:
    xa = np.asarray([x], np.float64)
    lp = logp(xa)[0]
    return np.exp(lp) * (lp - logq(xa)[0])

  return _quad(integrand, *interval, points=points)


def jensen_shannon_divergence(
  logp: LogDensity, logq: LogDensity, interval: tuple[float, float], points: Any = None
) -> float:
  """JSD(p || q) = KL(p || m)/2 + KL(q || m)/2 with m = (p + q)/2, by quadrature (nats)."""

  def logm(x):
    return np.logaddexp(logp(x), logq(x)) - np.log(2.0)

  return 0.5 * kl_divergence(logp, logm, interval, points) + 0.5 * kl_divergence(logq, logm, interval, points)


def optimal_value(p_data: Normal1D, p_g: Normal1D) -> dict[str, float]:
  """V(D*, G) by quadrature and the closed form -log 4 + 2 JSD (JSD by quadrature).

  Returns a dict with ``value_at_optimum``, ``jsd``, ``minus_log4_plus_2jsd``.
  """
  interval = _interval(None, p_data, p_g)
  pts = [p_data.mean, p_g.mean]
  v = gan_value(optimal_logit(p_data.logpdf, p_g.logpdf), p_data.logpdf, p_g.logpdf, interval, pts)
  jsd = jensen_shannon_divergence(p_data.logpdf, p_g.logpdf, interval, pts)
  return {"value_at_optimum": v, "jsd": jsd, "minus_log4_plus_2jsd": -np.log(4.0) + 2.0 * jsd}


class MLPDiscriminator(nn.Module):
  """Tiny 1-D MLP discriminator returning logits: Dense(h) tanh -> Dense(h) tanh -> Dense(1)."""

  hidden: int = 32

  @nn.compact
  def __call__(self, x):
    h = x.reshape(-1, 1)
    h = nn.tanh(nn.Dense(self.hidden)(h))
    h = nn.tanh(nn.Dense(self.hidden)(h))
    return nn.Dense(1)(h).reshape(x.shape)


def train_discriminator(
  key: jax.Array,
  sample_data: Callable[[jax.Array, int], jax.Array],
  sample_g: Callable[[jax.Array, int], jax.Array],
  steps: int = 400,
  batch_size: int = 1024,
  learning_rate: float = 1e-2,
  hidden: int = 32,
) -> tuple[LogitFn, np.ndarray]:
  """Train an :class:`MLPDiscriminator` on the GAN's D objective with fresh samples each step.

  Maximises (1/m) sum log D(x_i) + (1/m) sum log(1 - D(x~_i)), x ~ p_data,
  x~ ~ p_g (G fixed), i.e. minimises the binary cross-entropy with real = 1,
  fake = 0, with optax Adam and a cosine-decayed learning rate; the whole loop
  is a single jitted ``lax.scan``.

  Args:
    key: PRNG key (init + every batch).
    sample_data, sample_g: ``f(key, n) -> (n,)`` samplers (jax-traceable).
    steps, batch_size, learning_rate, hidden: training hyperparameters.

  Returns:
    (logit_fn, losses): a float64-returning numpy logit function of x and the
    per-step loss (negated V estimate) as a numpy array.
  """
  model = MLPDiscriminator(hidden)
  init_key, train_key = jax.random.split(key)
  params = model.init(init_key, jnp.zeros((batch_size,)))
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05))

  def loss_fn(params, xr, xf):
    lr_, lf = model.apply(params, xr), model.apply(params, xf)
    return -(jnp.mean(jax.nn.log_sigmoid(lr_)) + jnp.mean(jax.nn.log_sigmoid(-lf)))

  @jax.jit
  def run(params, key):
    def step(carry, k):
      params, opt_state = carry
      kr, kf = jax.random.split(k)
      loss, grads = jax.value_and_grad(loss_fn)(params, sample_data(kr, batch_size), sample_g(kf, batch_size))
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, steps))
    return params, losses

  params, losses = run(params, train_key)
  apply = jax.jit(model.apply)

  def logit_fn(x: Any) -> np.ndarray:
    return np.asarray(apply(params, jnp.asarray(x, jnp.float32)), np.float64)

  return logit_fn, np.asarray(losses)
