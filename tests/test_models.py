"""Tests for jaxgan.models: shapes, ranges, train-mode state, conditioning, init.

Every model is exercised through its tiny variant so the file stays fast on CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.models import cgan, dcgan, layers, mlp

B = 4
Z_DIM = 8
KEY = jax.random.PRNGKey(0)


def _registry(kind: str):
  out = []
  for module in (mlp, dcgan, cgan):
    for name, cls in getattr(module, kind).items():
      out.append(pytest.param(cls, id=f"{module.__name__.rsplit('.', 1)[-1]}:{name}"))
  return out


def _labels(model, batch=B):
  if not model.is_conditional:
    return None
  return jnp.arange(batch) % model.num_classes


def _disc_input(model, batch=B):
  """Images in [-1, 1] shaped like the tiny generators' output (8x8x1), flat for toy models."""
  if isinstance(model, mlp.ToyCritic):
    return jax.random.normal(KEY, (batch, 2))
  size = getattr(model, "image_size", 8)
  return jax.random.uniform(KEY, (batch, size, size, 1), minval=-1.0, maxval=1.0)


def _init(model, x, labels):
  kp, kd = jax.random.split(jax.random.PRNGKey(1))
  return model.init({"params": kp, "dropout": kd}, x, labels, train=False)


def _apply_both_modes(model, variables, x, labels):
  """Eval-mode output and train-mode output (with BN state update and dropout rng)."""
  out_eval = model.apply(variables, x, labels, train=False)
  mutable = ["batch_stats"] if "batch_stats" in variables else False
  res = model.apply(variables, x, labels, train=True, mutable=mutable, rngs={"dropout": jax.random.PRNGKey(2)})
  out_train, new_state = res if mutable else (res, {})
  return out_eval, out_train, new_state


def _assert_bn_updated(variables, new_state):
  if "batch_stats" not in variables:
    return
  old = jax.tree_util.tree_leaves(variables["batch_stats"])
  new = jax.tree_util.tree_leaves(new_state["batch_stats"])
  assert len(old) == len(new) > 0
  assert any(not np.allclose(a, b) for a, b in zip(old, new)), "batch_stats not updated in train mode"


# --------------------------------------------------------------------------
# Generators and discriminators of every registry
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", _registry("GENERATORS"))
def test_generator_tiny_shapes_range_and_train_mode(cls):
  model = cls.tiny()
  z = jax.random.normal(KEY, (B, Z_DIM))
  labels = _labels(model)
  variables = _init(model, z, labels)
  out_eval, out_train, new_state = _apply_both_modes(model, variables, z, labels)
  for out in (out_eval, out_train):
    assert out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    if isinstance(model, mlp.ToyGenerator):
      assert out.shape == (B, model.out_dim)
    else:
      assert out.shape == (B, 8, 8, 1)
      assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
  _assert_bn_updated(variables, new_state)
  if not model.is_conditional:  # unconditional generators ignore labels
    same = model.apply(variables, z, jnp.zeros((B,), jnp.int32), train=False)
    np.testing.assert_array_equal(np.asarray(same), np.asarray(out_eval))


@pytest.mark.parametrize("cls", _registry("DISCRIMINATORS"))
def test_discriminator_tiny_shapes_and_train_mode(cls):
  model = cls.tiny()
  x = _disc_input(model)
  labels = _labels(model)
  variables = _init(model, x, labels)
  out_eval, out_train, new_state = _apply_both_modes(model, variables, x, labels)
  for out in (out_eval, out_train):
    assert out.shape == (B,)
    assert out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
  _assert_bn_updated(variables, new_state)


def test_registry_names():
  assert set(mlp.GENERATORS) == {"mlp", "toy_mlp"}
  assert set(mlp.DISCRIMINATORS) == {"mlp", "mlp_maxout", "toy_mlp"}
  assert set(dcgan.GENERATORS) == set(dcgan.DISCRIMINATORS) == {"dcgan_mnist", "dcgan"}
  assert set(cgan.GENERATORS) == {"cgan_mlp", "cgan_embed", "cgan_paper", "cgan_conv"}
  assert set(cgan.DISCRIMINATORS) == {"cgan_mlp", "cgan_maxout", "cgan_conv", "cgan_projection"}
  # names are unique across families, so the registries can be merged
  gens = [n for m in (mlp, dcgan, cgan) for n in m.GENERATORS]
  discs = [n for m in (mlp, dcgan, cgan) for n in m.DISCRIMINATORS]
  assert len(gens) == len(set(gens)) and len(discs) == len(set(discs))


def test_dropout_active_only_in_train_mode():
  model = mlp.MaxoutDiscriminator.tiny()
  x = _disc_input(model)
  variables = _init(model, x, None)
  e1 = model.apply(variables, x, train=False)
  e2 = model.apply(variables, x, train=False)
  t1 = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(3)})
  t2 = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(4)})
  np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))
  assert not np.allclose(t1, t2)


# --------------------------------------------------------------------------
# Maxout
# --------------------------------------------------------------------------


def test_maxout_equals_max_over_affine_pieces():
  features, k, d = 5, 3, 7
  layer = layers.Maxout(features, k)
  x = jax.random.normal(jax.random.PRNGKey(5), (6, d))
  params = layer.init(jax.random.PRNGKey(6), x)["params"]["dense"]
  w = np.asarray(params["kernel"], np.float64).reshape(d, features, k)
  b = np.asarray(params["bias"], np.float64).reshape(features, k)
  xn = np.asarray(x, np.float64)
  expected = np.empty((6, features))
  for n in range(6):
    for i in range(features):
      expected[n, i] = max(xn[n] @ w[:, i, j] + b[i, j] for j in range(k))
  out = layer.apply({"params": {"dense": params}}, x)
  assert out.shape == (6, features)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# Label conditioning
# --------------------------------------------------------------------------

_COND_G = [pytest.param(c, id=n) for n, c in cgan.GENERATORS.items()]
_COND_D = [pytest.param(c, id=n) for n, c in cgan.DISCRIMINATORS.items()]


@pytest.mark.parametrize("cls", _COND_G)
def test_conditional_generator_depends_on_labels(cls):
  model = cls.tiny()
  z = jax.random.normal(KEY, (B, Z_DIM))
  la = jnp.zeros((B,), jnp.int32)
  lb = jnp.ones((B,), jnp.int32)
  variables = _init(model, z, la)
  a = model.apply(variables, z, la, train=False)
  b = model.apply(variables, z, lb, train=False)
  assert float(jnp.max(jnp.abs(a - b))) > 1e-6
  with pytest.raises(ValueError):
    model.apply(variables, z, None, train=False)


@pytest.mark.parametrize("cls", _COND_D)
def test_conditional_discriminator_depends_on_labels(cls):
  model = cls.tiny()
  x = _disc_input(model)
  la = jnp.zeros((B,), jnp.int32)
  lb = jnp.full((B,), 2, jnp.int32)
  variables = _init(model, x, la)
  a = model.apply(variables, x, la, train=False)
  b = model.apply(variables, x, lb, train=False)
  assert float(jnp.max(jnp.abs(a - b))) > 1e-6
  with pytest.raises(ValueError):
    model.apply(variables, x, None, train=False)


# --------------------------------------------------------------------------
# Other image sizes
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
  "gen, disc, shape",
  [
    (dcgan.DCGANGenerator.tiny(image_size=64, channels=3), dcgan.DCGANDiscriminator.tiny(image_size=64), (64, 64, 3)),
    (dcgan.DCGANGenerator.tiny(image_size=28), dcgan.DCGANDiscriminator.tiny(image_size=28), (28, 28, 1)),
    (dcgan.MnistDCGANGenerator.tiny(image_size=28), dcgan.MnistDCGANDiscriminator.tiny(), (28, 28, 1)),
    (cgan.CGANMLPGenerator.tiny(image_shape=(32, 32, 3)), cgan.CGANMLPDiscriminator.tiny(), (32, 32, 3)),
    (
      cgan.ConvCGANGenerator.tiny(image_size=32, channels=3),
      cgan.ProjectionDiscriminator.tiny(image_size=32),
      (32, 32, 3),
    ),
  ],
  ids=["dcgan64", "dcgan28", "dcgan_mnist28", "cgan_mlp32", "cgan_conv32"],
)
def test_larger_image_sizes(gen, disc, shape):
  z = jax.random.normal(KEY, (2, Z_DIM))
  labels = _labels(gen, 2)
  gv = _init(gen, z, labels)
  img = gen.apply(gv, z, labels, train=False)
  assert img.shape == (2,) + shape
  assert float(jnp.abs(img).max()) <= 1.0
  dv = _init(disc, img, labels)
  logits = disc.apply(dv, img, labels, train=False)
  assert logits.shape == (2,)


def test_radford_base_sizes():
  assert dcgan.radford_num_stages(64) == (4, 4)
  assert dcgan.radford_num_stages(32) == (4, 3)
  assert dcgan.radford_num_stages(28) == (7, 2)
  assert dcgan.radford_num_stages(8) == (2, 2)
  assert dcgan.radford_num_stages(8, base_size=4) == (4, 1)
  with pytest.raises(ValueError):
    dcgan.radford_num_stages(28, base_size=4)


# --------------------------------------------------------------------------
# Radford initialisation
# --------------------------------------------------------------------------


def _collect(params, leaf_name):
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return [np.asarray(v).ravel() for path, v in flat if getattr(path[-1], "key", None) == leaf_name]


def test_radford_init_std():
  z = jax.random.normal(KEY, (2, Z_DIM))
  gen = dcgan.DCGANGenerator(image_size=16, channels=3, width=16)
  disc = dcgan.DCGANDiscriminator(image_size=16, width=16)
  gv = gen.init(jax.random.PRNGKey(7), z, train=False)
  dv = disc.init(jax.random.PRNGKey(8), jnp.zeros((2, 16, 16, 3)), train=False)
  for variables in (gv, dv):
    kernels = np.concatenate(_collect(variables["params"], "kernel"))
    assert kernels.size > 5000
    assert abs(kernels.mean()) < 2e-3
    assert 0.018 < kernels.std() < 0.022
    scales = np.concatenate(_collect(variables["params"], "scale"))
    assert abs(scales.mean() - 1.0) < 0.01
    assert 0.012 < scales.std() < 0.028


def test_low_precision_compute_returns_float32():
  gen = cgan.ConvCGANGenerator.tiny(dtype=jnp.bfloat16)  # dtype must reach the nested DCGAN
  z = jax.random.normal(KEY, (2, Z_DIM))
  labels = jnp.array([0, 1])
  gv = _init(gen, z, labels)
  assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(gv["params"]))
  out = gen.apply(gv, z, labels, train=False)
  assert out.dtype == jnp.float32 and out.shape == (2, 8, 8, 1)


def test_jitted_gradients_reach_every_parameter():
  """Under jit, the projection discriminator's loss has a gradient for every parameter."""
  model = cgan.ProjectionDiscriminator.tiny()
  x = _disc_input(model)
  labels = _labels(model)
  variables = _init(model, x, labels)

  @jax.jit
  def grads(params):
    def loss(p):
      out, _ = model.apply(
        {"params": p, "batch_stats": variables["batch_stats"]},
        x,
        labels,
        train=True,
        mutable=["batch_stats"],
      )
      return jnp.mean(jax.nn.softplus(-out))

    return jax.grad(loss)(params)

  g = grads(variables["params"])
  for path, leaf in jax.tree_util.tree_flatten_with_path(g)[0]:
    assert float(jnp.abs(leaf).max()) > 0, jax.tree_util.keystr(path)
