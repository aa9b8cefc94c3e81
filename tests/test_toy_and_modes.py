"""The 2-D mixtures and the PacGAN/VEEGAN mode metrics."""

import jax
import numpy as np
import pytest

from jaxgan.data import toy
from jaxgan.errors import ConfigError
from jaxgan.metrics import modes


def test_ring_has_eight_distinct_means_on_the_unit_circle():
  ring = toy.ring8()
  means = ring.means_array()
  assert means.shape == (8, 2) and ring.std == 0.01
  np.testing.assert_allclose(np.linalg.norm(means, axis=1), 1.0, atol=1e-6)
  angles = np.sort(np.mod(np.arctan2(means[:, 1], means[:, 0]), 2 * np.pi))
  np.testing.assert_allclose(angles, 2 * np.pi * np.arange(8) / 8, atol=1e-6)
  dists = np.linalg.norm(means[:, None] - means[None], axis=-1) + np.eye(8)
  assert dists.min() > 0.7


def test_grid_means_and_std():
  grid = toy.grid25()
  assert grid.std == 0.05
  assert sorted(set(grid.means_array()[:, 0].tolist())) == [-4, -2, 0, 2, 4]
  assert len({tuple(m) for m in grid.means_array().tolist()}) == 25


def test_samples_match_the_mixture():
  grid = toy.grid25()
  x = np.asarray(grid.sample(jax.random.PRNGKey(0), 20000))
  m = modes.mode_metrics(x, grid.means_array(), grid.std)
  assert m.modes_captured == 25 and m.high_quality_fraction > 0.98 and m.reverse_kl < 0.01
  # Within one mode the spread is the mixture's std.
  d = x - grid.means_array()[np.argmin(((x[:, None] - grid.means_array()[None]) ** 2).sum(-1), axis=1)]
  assert np.std(d) == pytest.approx(0.05, rel=0.05)


def test_iterator_is_deterministic_and_resumable():
  a = toy.MixtureIterator(toy.ring8(), 16, seed=3, n_critic=5)
  batches = [np.asarray(next(a)["x"]) for _ in range(4)]
  assert batches[0].shape == (5, 16, 2)
  assert not np.array_equal(batches[0], batches[1])
  b = toy.MixtureIterator(toy.ring8(), 16, seed=3, n_critic=5)
  b.set_state({"position": 2})
  np.testing.assert_array_equal(np.asarray(next(b)["x"]), batches[2])
  c = toy.MixtureIterator(toy.ring8(), 16, seed=4, n_critic=5)
  assert not np.array_equal(np.asarray(next(c)["x"]), batches[0])


def test_unknown_mixture():
  with pytest.raises(ConfigError, match="unknown 2-D dataset"):
    toy.get_mixture("ring9")


def test_mode_metrics_counts_collapse():
  means = toy.ring8().means_array()
  # All samples exactly on 2 of the 8 modes, equally: reverse KL = log(8 / 2).
  samples = np.concatenate([np.repeat(means[:1], 100, 0), np.repeat(means[3:4], 100, 0)])
  m = modes.mode_metrics(samples, means, 0.01)
  assert m.modes_captured == 2
  assert m.high_quality_fraction == 1.0
  assert m.reverse_kl == pytest.approx(np.log(4.0))


def test_mode_metrics_high_quality_threshold():
  means = np.array([[0.0, 0.0], [10.0, 0.0]])
  samples = np.array([[0.029, 0.0], [0.031, 0.0], [10.0, 0.5], [np.nan, 0.0]])
  m = modes.mode_metrics(samples, means, 0.01)
  assert m.high_quality_fraction == 0.25 and m.modes_captured == 1
  assert m.reverse_kl == pytest.approx(np.log(2.0))
