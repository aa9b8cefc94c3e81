"""Numerical checks of Goodfellow et al. (2014) Proposition 1 and Theorem 1 (seed 000 / 002).

p_data = N(0, 1), p_g = N(1, 1.5^2):
  (a) a tiny MLP trained with the D objective approaches D* = p_data / (p_data + p_g);
  (b) V(D*, G) = -log 4 + 2 JSD(p_data || p_g), both by quadrature, to 1e-6;
  (c) V(D*, G) >= V(D, G) for other discriminators D.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.special import expit, log_expit

from jaxgan.metrics.theory import (
  Normal1D,
  gan_value,
  jensen_shannon_divergence,
  optimal_discriminator,
  optimal_logit,
  optimal_value,
  train_discriminator,
)

P_DATA = Normal1D(0.0, 1.0)
P_G = Normal1D(1.0, 1.5)
INTERVAL = (-60.0, 61.0)
POINTS = [0.0, 1.0]
GRID = np.linspace(-2.5, 3.5, 601)  # where both densities have mass


@pytest.fixture(scope="module")
def trained():
  logit_fn, losses = train_discriminator(
    jax.random.PRNGKey(0), P_DATA.sample, P_G.sample, steps=400, batch_size=1024, learning_rate=1e-2
  )
  return logit_fn, losses


def test_trained_discriminator_approaches_optimal(trained):
  logit_fn, losses = trained
  d_star = optimal_discriminator(P_DATA.logpdf, P_G.logpdf)(GRID)
  d_hat = expit(logit_fn(GRID))
  mae = np.mean(np.abs(d_hat - d_star))
  assert mae < 0.05, mae
  # The training objective approaches its maximum V(D*, G) (loss = -V, Monte Carlo).
  v_star = optimal_value(P_DATA, P_G)["value_at_optimum"]
  assert -np.mean(losses[-50:]) == pytest.approx(v_star, abs=0.01)
  assert np.mean(losses[:10]) > np.mean(losses[-50:])


def test_optimal_value_is_minus_log4_plus_2jsd():
  out = optimal_value(P_DATA, P_G)
  assert out["value_at_optimum"] == pytest.approx(out["minus_log4_plus_2jsd"], abs=1e-6)
  assert 0.0 < out["jsd"] < np.log(2.0)
  # JSD by quadrature agrees with a dense-grid Riemann sum (independent discretisation).
  xs = np.linspace(*INTERVAL, 400_001)
  lp, lq = P_DATA.logpdf(xs), P_G.logpdf(xs)
  lm = np.logaddexp(lp, lq) - np.log(2)
  jsd_grid = 0.5 * np.sum(np.exp(lp) * (lp - lm) + np.exp(lq) * (lq - lm)) * (xs[1] - xs[0])
  assert out["jsd"] == pytest.approx(jsd_grid, abs=1e-8)


def test_global_optimum_when_generator_matches_data():
  # C(G) = -log 4 and D* = 1/2 exactly when p_g = p_data (Theorem 1).
  out = optimal_value(P_DATA, Normal1D(0.0, 1.0))
  assert out["jsd"] == pytest.approx(0.0, abs=1e-12)
  assert out["value_at_optimum"] == pytest.approx(-np.log(4.0), abs=1e-9)
  np.testing.assert_allclose(optimal_discriminator(P_DATA.logpdf, P_DATA.logpdf)(GRID), 0.5)
  # JSD is symmetric and bounded by log 2 for nearly disjoint supports.
  far = Normal1D(60.0, 1.0)
  jsd_far = jensen_shannon_divergence(P_DATA.logpdf, far.logpdf, (-40.0, 100.0), [0.0, 30.0, 60.0])
  assert jsd_far == pytest.approx(np.log(2.0), abs=1e-6)


def test_pointwise_maximiser():
  # a log y + b log(1 - y) is maximised at y = a / (a + b) (the step in Proposition 1).
  rng = np.random.default_rng(0)
  ys = np.linspace(1e-4, 1 - 1e-4, 20001)
  for a, b in rng.uniform(0.01, 2.0, (20, 2)):
    f = a * np.log(ys) + b * np.log1p(-ys)
    assert ys[np.argmax(f)] == pytest.approx(a / (a + b), abs=2e-4)


def test_optimal_discriminator_dominates_others(trained):
  logit_fn, _ = trained
  l_star = optimal_logit(P_DATA.logpdf, P_G.logpdf)
  v_star = gan_value(l_star, P_DATA.logpdf, P_G.logpdf, INTERVAL, POINTS)
  others = {
    "trained_mlp": logit_fn,
    "constant_half": lambda x: np.zeros_like(x),
    "shifted_logit": lambda x: l_star(x) + 0.3,
    "scaled_logit": lambda x: 0.7 * l_star(x),
    "wiggly_logit": lambda x: l_star(x) + 0.2 * np.sin(3 * x),
    "linear": lambda x: 0.5 - x,
  }
  for name, fn in others.items():
    v = gan_value(fn, P_DATA.logpdf, P_G.logpdf, INTERVAL, POINTS, epsabs=1e-9)
    assert v <= v_star + 1e-9, name
    if name != "trained_mlp":
      assert v < v_star - 1e-4, name
  assert gan_value(lambda x: np.zeros_like(x), P_DATA.logpdf, P_G.logpdf, INTERVAL) == pytest.approx(-np.log(4.0))
  # The trained D is near-optimal in value too.
  v_trained = gan_value(logit_fn, P_DATA.logpdf, P_G.logpdf, INTERVAL, POINTS, epsabs=1e-9)
  assert v_star - v_trained < 5e-3
  # Sanity: value computed with log_expit equals the plain formula where D is moderate.
  x = np.array([0.3])
  assert log_expit(l_star(x))[0] == pytest.approx(np.log(optimal_discriminator(P_DATA.logpdf, P_G.logpdf)(x))[0])
