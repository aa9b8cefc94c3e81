"""Tests for jaxgan.metrics: FID maths, streaming stats, KID, IS, P/R, features, Inception, Metropolis."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxgan.data import toy
from jaxgan.metrics import modes
from jaxgan.metrics.features import (
  FeatureExtractor,
  FlattenFeatures,
  compute_stats,
  extract_features,
)
from jaxgan.metrics.frechet import GaussianStats, fid_from_features, frechet_distance, sqrtm_psd
from jaxgan.metrics.inception_score import inception_score
from jaxgan.metrics.kid import kernel_inception_distance, mmd2_unbiased
from jaxgan.metrics.metropolis import (
  GaussianMixture,
  estimate_mixture_params,
  from_toy,
  metropolis,
)
from jaxgan.metrics.prdc import knn_radii, pairwise_sq_distances, prdc, precision_recall


def _random_spd(rng, d, cond=10.0):
  q, _ = np.linalg.qr(rng.standard_normal((d, d)))
  w = np.exp(rng.uniform(0, np.log(cond), d))
  return (q * w) @ q.T


# ------------------------------------------------------------------------------------------- Fréchet


def _fd_scipy_reference(mu1, s1, mu2, s2):
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  covmean = np.real(covmean)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [1, 4, 16, 64])
def test_frechet_matches_scipy_sqrtm_reference(d):
  rng = np.random.default_rng(d)
  mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
  s1, s2 = _random_spd(rng, d), _random_spd(rng, d, cond=100.0)
  ours = frechet_distance(mu1, s1, mu2, s2)
  ref = _fd_scipy_reference(mu1, s1, mu2, s2)
  assert ours == pytest.approx(ref, rel=1e-6)


def test_frechet_closed_form_diagonal():
  rng = np.random.default_rng(0)
  d = 32
  mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
  a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
  a[:3] = 0.0  # singular covariance: still exact
  exact = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
  assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(exact, rel=1e-10)
  # Same Gaussian: zero; symmetric in its arguments.
  s = _random_spd(rng, d)
  assert abs(frechet_distance(mu1, s, mu1, s)) < 1e-9
  s2 = _random_spd(rng, d)
  assert frechet_distance(mu1, s, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s), rel=1e-9)


def test_frechet_rank_deficient_sample_covariance():
  # d > n: both sample covariances singular -- the usual FID regime in miniature.
  rng = np.random.default_rng(1)
  x, y = rng.standard_normal((20, 50)), rng.standard_normal((20, 50)) + 0.3
  ours = fid_from_features(x, y)
  ref = _fd_scipy_reference(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
  assert np.isfinite(ours) and ours > 0
  assert ours == pytest.approx(ref, rel=1e-4)  # sqrtm itself is inaccurate on singular input


def test_frechet_eps_fallback_on_indefinite_input():
  # A covariance that is not PSD (e.g. corrupted stats) triggers the eps * I fallback with a warning.
  rng = np.random.default_rng(5)
  s1 = _random_spd(rng, 6)
  s2 = np.diag([1.0, 1.0, 1.0, 1.0, 1.0, -1e-3])
  with pytest.warns(RuntimeWarning, match="ill-conditioned"):
    v = frechet_distance(np.zeros(6), s1, np.zeros(6), s2)
  assert np.isfinite(v)
  with pytest.raises(ValueError):
    frechet_distance(np.zeros(6), s1, np.zeros(6), np.full((6, 6), np.nan))


def test_sqrtm_psd():
  rng = np.random.default_rng(2)
  s = _random_spd(rng, 8)
  r = sqrtm_psd(s)
  np.testing.assert_allclose(r @ r, s, atol=1e-10)
  np.testing.assert_allclose(r, r.T)


def test_streaming_stats_equal_batch_stats():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((1003, 7)).astype(np.float32) * 3 + 100.0  # large offset: tests stability
  stats = GaussianStats.empty(7)
  for chunk in np.array_split(x, [1, 10, 11, 500, 777]):
    stats = stats.update(chunk)
  x64 = x.astype(np.float64)
  assert stats.count == 1003
  np.testing.assert_allclose(stats.mean, x64.mean(0), rtol=1e-12)
  np.testing.assert_allclose(stats.cov, np.cov(x64, rowvar=False), rtol=1e-10, atol=1e-12)
  # Merge order does not matter.
  a, b = GaussianStats.from_features(x[:300]), GaussianStats.from_features(x[300:])
  np.testing.assert_allclose(b.merge(a).cov, a.merge(b).cov, rtol=1e-12)


def test_stats_save_load(tmp_path):
  x = np.random.default_rng(4).standard_normal((50, 5))
  s = GaussianStats.from_features(x)
  s.save(tmp_path / "s.npz")
  t = GaussianStats.load(tmp_path / "s.npz")
  assert t.count == 50
  np.testing.assert_allclose(t.cov, s.cov)
  np.savez(tmp_path / "ref.npz", mu=s.mean, sigma=s.cov)  # reference-stats layout
  np.testing.assert_allclose(GaussianStats.load(tmp_path / "ref.npz").cov, s.cov, rtol=1e-11)


# ------------------------------------------------------------------------------------------ features


def test_extract_features_streams_iterables_and_sample_fns():
  ext = FlattenFeatures()
  assert isinstance(ext, FeatureExtractor)
  rng = np.random.default_rng(5)
  imgs = rng.uniform(-1, 1, (23, 4, 4, 1)).astype(np.float32)
  batches = [imgs[:5], (imgs[5:12], np.zeros(7)), {"image": imgs[12:]}]
  feats = extract_features(ext, iter(batches), num_samples=20, batch_size=6)
  np.testing.assert_array_equal(feats, imgs[:20].reshape(20, -1))
  with pytest.raises(ValueError, match="exhausted"):
    extract_features(ext, [imgs[:5]], num_samples=6, batch_size=4)

  def sample_fn(key, n):
    return jax.random.uniform(key, (n, 2, 2, 1), minval=-1, maxval=1)

  f1 = extract_features(ext, sample_fn, 11, batch_size=4, key=jax.random.PRNGKey(0))
  f2 = extract_features(ext, sample_fn, 11, batch_size=4, key=jax.random.PRNGKey(0))
  assert f1.shape == (11, 4)
  np.testing.assert_array_equal(f1, f2)
  st = compute_stats(ext, sample_fn, 11, batch_size=4, key=jax.random.PRNGKey(0))
  np.testing.assert_allclose(st.cov, np.cov(f1.astype(np.float64), rowvar=False), rtol=1e-6, atol=1e-9)
  st2 = compute_stats(ext, iter(batches), 20, batch_size=6)
  np.testing.assert_allclose(st2.mean, imgs[:20].reshape(20, -1).astype(np.float64).mean(0), atol=1e-7)


# ----------------------------------------------------------------------------------------------- KID


def test_mmd2_unbiased_matches_numpy_loop():
  rng = np.random.default_rng(6)
  x, y = rng.standard_normal((9, 3)), rng.standard_normal((7, 3)) + 0.5

  def k(a, b):
    return (a @ b / 3 + 1) ** 3

  kxx = sum(k(x[i], x[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
  kyy = sum(k(y[i], y[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
  kxy = sum(k(x[i], y[j]) for i in range(9) for j in range(7)) / (9 * 7)
  ref = kxx + kyy - 2 * kxy
  got = float(mmd2_unbiased(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)))
  assert got == pytest.approx(ref, rel=1e-4, abs=1e-5)


def test_kid_unbiased_near_zero_and_positive_when_shifted():
  d, n, draws = 8, 120, 40
  rng = np.random.default_rng(7)
  same, shifted = [], []
  for i in range(draws):
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, d))
    same.append(kernel_inception_distance(x, y, n_subsets=4, subset_size=100, seed=i)[0])
    shifted.append(kernel_inception_distance(x, y + 0.5, n_subsets=4, subset_size=100, seed=i)[0])
  same, shifted = np.asarray(same), np.asarray(shifted)
  se = same.std(ddof=1) / np.sqrt(draws)
  assert abs(same.mean()) < 3 * se, (same.mean(), se)
  assert np.any(same < 0)  # unbiased estimator: negative values occur
  assert shifted.mean() > 10 * shifted.std(ddof=1) / np.sqrt(draws)
  assert shifted.mean() > 20 * abs(same.mean())


def test_kid_seed_is_deterministic_and_returns_std():
  rng = np.random.default_rng(8)
  x, y = rng.standard_normal((60, 4)), rng.standard_normal((50, 4))
  a = kernel_inception_distance(x, y, n_subsets=5, subset_size=30, seed=np.random.default_rng(1))
  b = kernel_inception_distance(x, y, n_subsets=5, subset_size=30, seed=1)
  assert a == b and a[1] > 0


# ------------------------------------------------------------------------------------------------ IS


def test_inception_score_bounds():
  c, n = 10, 1000
  onehot = np.eye(c)[np.arange(n) % c]
  mean, std = inception_score(onehot, n_splits=10)
  assert mean == pytest.approx(c, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)
  probs = np.random.default_rng(9).dirichlet(np.ones(c))
  same = np.tile(probs, (n, 1))
  mean, std = inception_score(same, n_splits=5)
  assert mean == pytest.approx(1.0, abs=1e-12)
  # Logit input gives the same as the softmax probabilities; the value is in [1, C].
  logits = np.random.default_rng(10).standard_normal((200, c)) * 3
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  a = inception_score(logits, n_splits=4, from_logits=True)
  b = inception_score(p, n_splits=4)
  assert a[0] == pytest.approx(b[0], rel=1e-10) and 1.0 < a[0] < c
  # Direct formula for one split.
  py = p.mean(0)
  direct = np.exp(np.mean(np.sum(p * (np.log(p) - np.log(py)), axis=1)))
  assert inception_score(p, n_splits=1)[0] == pytest.approx(direct, rel=1e-12)


# ----------------------------------------------------------------------------------------------- P/R


def _prdc_bruteforce(real, fake, k):
  def d2(a, b):
    return ((a[:, None] - b[None]) ** 2).sum(-1)

  rr, ff, fr = d2(real, real), d2(fake, fake), d2(fake, real)
  r_real = np.sort(rr, axis=1)[:, k]
  r_fake = np.sort(ff, axis=1)[:, k]
  inside = fr <= r_real[None]
  return {
    "precision": inside.any(1).mean(),
    "recall": (d2(real, fake) <= r_fake[None]).any(1).mean(),
    "density": inside.sum() / (k * len(fake)),
    "coverage": (fr.min(0) <= r_real).mean(),
  }


def test_pairwise_and_radii_match_numpy():
  rng = np.random.default_rng(11)
  x, y = rng.standard_normal((37, 5)), rng.standard_normal((21, 5))
  ref = ((x[:, None] - y[None]) ** 2).sum(-1)
  np.testing.assert_allclose(pairwise_sq_distances(x, y, batch_size=8), ref, rtol=1e-4, atol=1e-4)
  rx = np.sort(((x[:, None] - x[None]) ** 2).sum(-1), axis=1)[:, 3]
  np.testing.assert_allclose(knn_radii(x, k=3, batch_size=8), rx, rtol=1e-4, atol=1e-4)


def test_precision_recall_identical_far_and_partial():
  rng = np.random.default_rng(12)
  real = rng.standard_normal((150, 6)).astype(np.float32)
  p, r = precision_recall(real, real.copy(), k=3, batch_size=64)
  assert p == 1.0 and r == 1.0
  out = prdc(real, real + 100.0, k=3, batch_size=64)
  assert out["precision"] == 0.0 and out["recall"] == 0.0 and out["coverage"] == 0.0
  # Partial overlap: blockwise jax result equals the brute-force numpy definition.
  fake = (rng.standard_normal((110, 6)) * 1.5 + 0.7).astype(np.float32)
  got = prdc(real, fake, k=3, batch_size=32)
  ref = _prdc_bruteforce(real.astype(np.float64), fake.astype(np.float64), 3)
  for key in ref:
    assert got[key] == pytest.approx(ref[key], abs=0.02), key
  assert 0.0 < got["precision"] < 1.0 and 0.0 < got["recall"] < 1.0


# ------------------------------------------------------------------------------------------ Inception


@pytest.mark.slow
def test_inception_random_weights_end_to_end(tmp_path, monkeypatch):
  from jaxgan.metrics import inception as inc

  key = jax.random.PRNGKey(0)
  ext = inc.InceptionFeatures.random(key)  # full 299x299 path
  assert isinstance(ext, FeatureExtractor) and ext.name == "inception_v3_fid_pool3"

  def sample_fn(k, n):
    return jax.random.uniform(k, (n, 28, 28, 1), minval=-1, maxval=1)

  feats = extract_features(ext, sample_fn, num_samples=3, batch_size=2, key=jax.random.PRNGKey(1))
  assert feats.shape == (3, 2048) and np.all(np.isfinite(feats)) and np.all(feats >= 0)  # post-ReLU pool
  imgs = sample_fn(jax.random.PRNGKey(2), 2)
  pool3, logits = ext.features_and_logits(imgs)
  assert logits.shape == (2, 1008)
  # Batch composition does not change a sample's features (BN in inference mode).
  np.testing.assert_allclose(
    np.asarray(ext(imgs))[0], np.asarray(ext(jnp.stack([imgs[0], imgs[0]])))[0], rtol=1e-4, atol=1e-5
  )
  # Grey and RGB-replicated inputs agree; different inputs give different features.
  np.testing.assert_allclose(np.asarray(ext(jnp.repeat(imgs, 3, -1))), np.asarray(pool3), rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(pool3[0] - pool3[1]).max()) > 0
  m, _ = inception_score(np.asarray(logits), n_splits=1, from_logits=True)
  assert 1.0 <= m <= 2.0

  # Weight file round trip through the documented .npz layout and the env var.
  path = tmp_path / "inception_fid.npz"
  inc.save_inception_weights(path, ext.variables)
  monkeypatch.setenv(inc.ENV_VAR, str(path))
  loaded = inc.InceptionFeatures()
  np.testing.assert_array_equal(np.asarray(loaded(imgs)), np.asarray(pool3))

  # pytorch-fid state dict conversion is the inverse of the torch naming scheme.
  flat = inc.flatten_variables(ext.variables)
  sd = {}
  for k, v in flat.items():
    col, *mod, leaf = k.split("/")
    name = ".".join(mod)
    if name == "fc":
      sd["fc." + leaf.replace("kernel", "weight")] = v.T if leaf == "kernel" else v
    elif leaf == "kernel":
      sd[name + ".weight"] = np.transpose(v, (3, 2, 0, 1))
    else:
      sd[name + "." + {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}[leaf]] = v
  sd["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0)
  conv = inc.convert_pytorch_fid_state_dict(sd)
  assert set(conv) == set(flat) == set(inc.expected_weight_shapes())
  for k in flat:
    np.testing.assert_array_equal(conv[k], flat[k])


def test_inception_missing_weights_error(tmp_path, monkeypatch):
  from jaxgan.metrics import inception as inc

  monkeypatch.delenv(inc.ENV_VAR, raising=False)
  with pytest.raises(FileNotFoundError, match=inc.ENV_VAR) as err:
    inc.InceptionFeatures()
  assert ".npz" in str(err.value) and "\n" not in str(err.value)
  monkeypatch.setenv(inc.ENV_VAR, str(tmp_path / "nope.npz"))
  with pytest.raises(FileNotFoundError, match="nope.npz"):
    inc.load_inception_weights()
  bad = tmp_path / "bad.npz"
  np.savez(bad, **{"params/fc/kernel": np.zeros((3, 3))})
  with pytest.raises(ValueError, match="missing"):
    inc.load_inception_weights(bad)


# ----------------------------------------------------------------------------------------- Metropolis


def test_metropolis_recovers_two_gaussian_mixture():
  mix = GaussianMixture.create([[-2.0, 0.0], [2.0, 0.0]], [0.8, 0.8], [0.3, 0.7])
  # All chains start in the *lighter* mode: recovering 0.3/0.7 requires mixing.
  init = jnp.tile(jnp.array([[-2.0, 0.0]]), (256, 1))
  res = metropolis(jax.random.PRNGKey(0), mix.log_prob, init, num_samples=300, step_size=1.5, burn_in=300, thin=4)
  assert res.samples.shape == (300, 256, 2)
  assert 0.2 < float(res.accept_rate.mean()) < 0.6
  w, mu = estimate_mixture_params(res.samples, mix)
  np.testing.assert_allclose(w, [0.3, 0.7], atol=0.03)
  np.testing.assert_allclose(mu, mix.means, atol=0.1)
  # Sample mean vs the exact mixture mean.
  np.testing.assert_allclose(np.asarray(res.samples).reshape(-1, 2).mean(0), [0.8, 0.0], atol=0.1)


def test_mixture_helpers():
  ring, grid = from_toy(toy.ring8()), from_toy(toy.grid25())
  assert ring.means.shape == (8, 2) and grid.means.shape == (25, 2)
  np.testing.assert_allclose(grid.stds, 0.05)
  x = ring.sample(jax.random.PRNGKey(0), 4000)
  st = modes.mode_metrics(np.asarray(x), ring.means, 0.01)
  assert st.modes_captured == 8 and st.high_quality_fraction > 0.95
  # log_prob is normalised: integrate a 1-D mixture on a grid.
  m1 = GaussianMixture.create([[0.0], [3.0]], [0.5, 1.0], [0.4, 0.6])
  xs = np.linspace(-10, 15, 20001)[:, None]
  assert np.trapezoid(np.exp(np.asarray(m1.log_prob(jnp.asarray(xs, jnp.float32)))), xs[:, 0]) == pytest.approx(
    1.0, abs=1e-4
  )
  # A collapsed sampler (one mode only) is detected.
  collapsed = jnp.asarray(ring.means[:1]) + 0.002 * jax.random.normal(jax.random.PRNGKey(1), (500, 2))
  assert modes.mode_metrics(np.asarray(collapsed), ring.means, 0.01).modes_captured == 1


def test_confident_fraction_counts_top_probabilities_above_threshold():
  from jaxgan.metrics.classifier import confident_fraction

  logits = np.array([[10.0, 0.0], [0.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, -5.0]], np.float32)
  fn = lambda x: jnp.asarray(x).reshape(len(x), 2)  # noqa: E731 - "images" are their own logits
  # softmax maxima: 0.99995, 0.5, 0.9526, 0.731, 0.9933 -> 3 of 5 above 0.9, in batches of 2 (padded)
  assert confident_fraction(fn, logits, 0.9, batch_size=2) == pytest.approx(3 / 5)
  assert confident_fraction(fn, logits, 0.99, batch_size=2) == pytest.approx(2 / 5)
