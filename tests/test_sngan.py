"""Tests for spectral normalisation (jaxgan.models.layers) and the SNGAN ResNets (jaxgan.models.sngan).

Spectral norm: after enough training-mode calls the power iteration converges
and every normalised weight has largest singular value 1 (numpy SVD); the
state is left alone in evaluation mode and is deterministic given the init
key. SNGAN: shapes and ranges of the tiny networks (computed) and of the
full-size 32 and 48 px ones (``jax.eval_shape`` only), conditioning, and the
parameter counts of Mimicry's SNGAN32 / SNGAN48.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan.models import cgan, layers, sngan
from jaxgan.state import ModuleCall, init_net, param_count

B = 4
Z_DIM = 8
KEY = jax.random.PRNGKey(0)
TRAIN_CALLS = 40


def _init(model, x, labels=None, key=1):
  return jax.jit(lambda k: model.init(k, x, labels, train=False))(jax.random.PRNGKey(key))


def _train_calls(model, variables, x, labels=None, n=TRAIN_CALLS):
  """``n`` training-mode calls threading 'batch_stats' (one compiled scan); returns the final variables."""

  @jax.jit
  def run(variables):
    def body(stats, _):
      _, new = model.apply({**variables, "batch_stats": stats}, x, labels, train=True, mutable=["batch_stats"])
      return new["batch_stats"], None

    stats, _ = jax.lax.scan(body, variables["batch_stats"], None, length=n)
    return {**variables, "batch_stats": stats}

  return run(variables)


def _sn_entries(variables):
  """``{param path: (weight, stored sigma, stored u)}`` for every spectrally normalised weight.

  A spectral-norm module ``.../<parent>/<name>_sn`` keeps flat keys
  ``"<layer path>/<param>/sigma"``; the weight is ``params/<parent>/<layer path>/<param>``.
  """
  out = {}
  for path, sigma in jax.tree_util.tree_leaves_with_path(variables["batch_stats"]):
    key = path[-1].key
    if not key.endswith("/sigma"):
      continue
    parent = tuple(p.key for p in path[:-2])
    rel = tuple(key.split("/")[:-1])
    u = variables["batch_stats"]
    for p in path[:-1]:
      u = u[p.key]
    u = u[key[: -len("sigma")] + "u"]
    w = variables["params"]
    for name in parent + rel:
      w = w[name]
    out[parent + rel] = (np.asarray(w, np.float64), float(sigma), np.asarray(u, np.float64))
  return out


def _matrix_weights(params):
  return {tuple(p.key for p in path) for path, w in jax.tree_util.tree_leaves_with_path(params) if np.ndim(w) >= 2}


def _top_singular_value(w):
  return np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]


def _assert_normalised(variables):
  entries = _sn_entries(variables)
  assert set(entries) == _matrix_weights(variables["params"]), "not every weight of rank >= 2 is normalised"
  for path, (w, sigma, _) in entries.items():
    ratio = _top_singular_value(w) / sigma
    assert abs(ratio - 1.0) < 0.01, f"{'/'.join(path)}: sigma_max(W / sigma) = {ratio:.4f}"


def _flax_fresh_sigma(w, u):
  """The sigma nn.SpectralNorm divides by: one power iteration from the stored ``u``."""
  m = w.reshape(-1, w.shape[-1])
  v = u @ m.T
  v /= np.linalg.norm(v)
  u = v @ m
  u /= np.linalg.norm(u)
  return float((v @ m @ u.T)[0, 0])


def _bits_equal(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --------------------------------------------------------------------------
# Spectral normalisation
# --------------------------------------------------------------------------


class _ConvBNDense(nn.Module):
  """Conv -> BatchNorm -> ReLU -> Dense(1): a discriminator that takes no labels."""

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    h = nn.Conv(4, (3, 3), name="conv")(x)
    h = nn.relu(layers.batch_norm(train, jnp.float32, jnp.float32, "bn")(h))
    return nn.Dense(1, name="out")(h.reshape(h.shape[0], -1))[:, 0]


class _Plain(nn.Module):
  """``__call__(x)`` only: no labels, no train."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(nn.relu(nn.Dense(6)(x.reshape(x.shape[0], -1))))[:, 0]


def test_sngan_discriminator_spectral_norm_converges_and_is_frozen_in_eval():
  # The projection and AC-GAN heads too, so the embedding and both dense layers are covered.
  model = sngan.SNGANDiscriminator.tiny(num_classes=3, aux_classes=4)
  x = jax.random.uniform(KEY, (B, 8, 8, 3), minval=-1.0, maxval=1.0)
  la, lb = jnp.zeros((B,), jnp.int32), jnp.full((B,), 2, jnp.int32)
  init = jax.jit(lambda key: model.init(key, x, la, train=False))
  variables = init(jax.random.PRNGKey(1))
  # Deterministic: the same init key gives bit-identical u; another key another u.
  _bits_equal(variables["batch_stats"], init(jax.random.PRNGKey(1))["batch_stats"])
  other = init(jax.random.PRNGKey(2))["batch_stats"]
  assert not np.array_equal(other["out_sn"]["out/kernel/u"], variables["batch_stats"]["out_sn"]["out/kernel/u"])
  # Parameter names are the layers' own; the SN state sits in sibling "<layer>_sn" modules.
  assert set(variables["batch_stats"]["block1"]) == {"conv1_sn", "conv2_sn", "shortcut_sn"}
  assert set(variables["batch_stats"]["block1"]["conv1_sn"]) == {"conv1/kernel/u", "conv1/kernel/sigma"}
  assert set(variables["batch_stats"]) >= {"out_sn", "embed_sn", "aux_sn"}

  trained = _train_calls(model, variables, x, la)
  _assert_normalised(trained)

  # Evaluation leaves u and sigma bit-identical, and is deterministic.
  apply_eval = jax.jit(lambda labels: model.apply(trained, x, labels, train=False, mutable=["batch_stats"]))
  (logits, class_logits), state = apply_eval(la)
  _bits_equal(state["batch_stats"], trained["batch_stats"])
  np.testing.assert_array_equal(np.asarray(apply_eval(la)[0][0]), np.asarray(logits))
  assert logits.shape == (B,) and class_logits.shape == (B, 4)
  assert logits.dtype == class_logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  # Projection: the labels matter and are required.
  assert float(jnp.max(jnp.abs(apply_eval(lb)[0][0] - logits))) > 1e-6
  with pytest.raises(ValueError):
    model.apply(trained, x, None, train=False)


def test_spectral_normalized_wraps_a_whole_network_without_labels():
  wrapped = layers.SpectralNormalized(_ConvBNDense())
  call = ModuleCall.of(wrapped)
  assert call.takes_labels and call.takes_train and not wrapped.is_conditional
  x = jax.random.normal(KEY, (B, 4, 4, 2))
  net = jax.jit(lambda key: init_net(wrapped, optax.sgd(0.1), key, x))(jax.random.PRNGKey(3))
  variables = {"params": net.params, "batch_stats": net.batch_stats}
  assert set(variables["batch_stats"]) == {"inner", "sn"}
  assert set(variables["batch_stats"]["inner"]["bn"]) == {"mean", "var"}
  # Only the kernels are normalised: no state for biases or the BatchNorm scale / offset.
  assert set(variables["batch_stats"]["sn"]) == {
    "inner/conv/kernel/u",
    "inner/conv/kernel/sigma",
    "inner/out/kernel/u",
    "inner/out/kernel/sigma",
  }

  trained = _train_calls(wrapped, variables, x)
  _assert_normalised(trained)
  inner_stats = trained["batch_stats"]["inner"]
  assert not np.allclose(inner_stats["bn"]["mean"], variables["batch_stats"]["inner"]["bn"]["mean"])

  # Evaluation: state untouched; the output is the inner network's with each kernel divided by
  # Flax's fresh estimate (one power iteration from the stored u), all other parameters as they are.
  out, state = jax.jit(lambda v: wrapped.apply(v, x, None, train=False, mutable=["batch_stats"]))(trained)
  _bits_equal(state["batch_stats"], trained["batch_stats"])
  params = jax.tree.map(np.asarray, trained["params"]["inner"])
  for path, (w, _, u) in _sn_entries(trained).items():
    layer, name = path[1], path[2]
    params[layer][name] = (w / _flax_fresh_sigma(w, u)).astype(np.float32)
  expected = _ConvBNDense().apply({"params": params, "batch_stats": inner_stats}, x, train=False)
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_spectral_normalized_forwards_only_what_the_inner_network_takes():
  x = jax.random.normal(KEY, (B, 3, 3, 1))
  plain = layers.SpectralNormalized(_Plain(), n_steps=3)
  variables = _init(plain, x)
  apply = jax.jit(lambda labels: plain.apply(variables, x, labels, train=True, mutable=["batch_stats"])[0])
  a, b = apply(None), apply(jnp.zeros((B,), jnp.int32))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # labels ignored
  assert set(variables["batch_stats"]["sn"]) == {f"inner/Dense_{i}/kernel/{v}" for i in (0, 1) for v in ("u", "sigma")}

  # A conditional inner network gets the labels (and keeps its BatchNorm statistics).
  proj = layers.SpectralNormalized(cgan.ProjectionDiscriminator.tiny())
  assert proj.is_conditional and proj.num_classes == 3
  xi = jax.random.uniform(KEY, (B, 8, 8, 1), minval=-1.0, maxval=1.0)
  la, lb = jnp.zeros((B,), jnp.int32), jnp.full((B,), 2, jnp.int32)
  variables = _init(proj, xi, la)
  assert "inner" in variables["batch_stats"] and "inner/embed/embedding/u" in variables["batch_stats"]["sn"]
  apply = jax.jit(lambda labels: proj.apply(variables, xi, labels, train=False))
  assert float(jnp.max(jnp.abs(apply(la) - apply(lb)))) > 1e-6
  with pytest.raises(ValueError, match="n_steps"):
    layers.SpectralNormalized(_Plain(), n_steps=0).init(KEY, x)


# --------------------------------------------------------------------------
# SNGAN shapes and conditioning
# --------------------------------------------------------------------------


def test_tiny_generators_shapes_range_and_conditioning():
  z = jax.random.normal(KEY, (B, Z_DIM))
  gen = sngan.SNGANGenerator.tiny()
  variables = _init(gen, z)
  out, state = jax.jit(lambda v: gen.apply(v, z, train=True, mutable=["batch_stats"]))(variables)
  assert out.shape == (B, 8, 8, 1) and out.dtype == jnp.float32
  assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
  assert not np.allclose(state["batch_stats"]["bn_out"]["mean"], variables["batch_stats"]["bn_out"]["mean"])
  assert not gen.is_conditional

  cond = sngan.SNGANGenerator.tiny(num_classes=3, channels=3)
  la, lb = jnp.zeros((B,), jnp.int32), jnp.ones((B,), jnp.int32)
  variables = _init(cond, z, la)
  # Conditional BatchNorm: per-class gamma = 1 and beta = 0 at init, statistics without an affine part.
  bn1 = variables["params"]["block1"]["bn1"]
  assert set(bn1) == {"gamma", "beta"} and "bn" not in bn1
  np.testing.assert_array_equal(bn1["gamma"]["embedding"], np.ones((3, 8)))
  np.testing.assert_array_equal(bn1["beta"]["embedding"], np.zeros((3, 8)))
  # Distinct per-class scales, so that the labels matter.
  params = jax.tree_util.tree_map_with_path(
    lambda p, v: v + 0.1 * jnp.arange(v.shape[0])[:, None] if p[-2].key in ("gamma", "beta") else v,
    variables["params"],
  )
  apply = jax.jit(lambda labels: cond.apply({**variables, "params": params}, z, labels, train=False))
  a, b = apply(la), apply(lb)
  assert a.shape == (B, 8, 8, 3)
  assert float(jnp.max(jnp.abs(a - b))) > 1e-6
  with pytest.raises(ValueError):
    cond.apply(variables, z, None, train=False)


def test_tiny_discriminator_shapes_and_ablation():
  x = jax.ShapeDtypeStruct((B, 8, 8, 1), jnp.float32)
  disc = sngan.SNGANDiscriminator.tiny()
  out, variables = jax.eval_shape(lambda x: disc.init_with_output(KEY, x, train=False), x)
  assert out.shape == (B,) and out.dtype == jnp.float32
  assert not disc.is_conditional
  leaves = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(variables["batch_stats"])]
  assert leaves and all(p.endswith(("/u']", "/sigma']")) for p in leaves)  # SN state only: no BatchNorm in D
  # The ablation keeps the parameter tree and drops the SN state.
  plain = jax.eval_shape(lambda x: sngan.SNGANDiscriminator.tiny(spectral_norm=False).init(KEY, x, train=False), x)
  assert set(plain) == {"params"}
  assert jax.tree.structure(plain["params"]) == jax.tree.structure(variables["params"])
  with pytest.raises(ValueError, match="expected 8x8"):
    disc.init(KEY, jnp.zeros((1, 16, 16, 1)), train=False)


@pytest.mark.parametrize("size", [32, 48])
def test_full_size_shapes(size):
  z = jax.ShapeDtypeStruct((B, 128), jnp.float32)
  x = jax.ShapeDtypeStruct((B, size, size, 3), jnp.float32)
  labels = jax.ShapeDtypeStruct((B,), jnp.int32)
  for g in (sngan.SNGANGenerator(image_size=size), sngan.SNGANGenerator(image_size=size, num_classes=10)):
    out = jax.eval_shape(lambda z, y, g=g: g.init_with_output(KEY, z, y, train=False)[0], z, labels)
    assert out.shape == (B, size, size, 3) and out.dtype == jnp.float32
  d = sngan.SNGANDiscriminator(image_size=size)
  assert jax.eval_shape(lambda x: d.init_with_output(KEY, x, train=False)[0], x).shape == (B,)
  d = sngan.SNGANDiscriminator(image_size=size, num_classes=10, aux_classes=10)
  logits, class_logits = jax.eval_shape(lambda x, y: d.init_with_output(KEY, x, y, train=False)[0], x, labels)
  assert logits.shape == (B,) and class_logits.shape == (B, 10)


# Parameter counts of Mimicry's SNGAN networks (torch_mimicry.nets.sngan), biases included; the
# u vectors of spectral norm are buffers there and batch_stats here, so not counted.
#   G32: Dense 128->4*4*256 (528,384) + 3 GBlocks 256->256 (2 BN 1,024 + 2 conv3x3 1,180,160 +
#        conv1x1 65,792 = 1,246,976 each) + BN 512 + conv3x3 256->3 (6,915)                 = 4,276,739
#   D32: optimized 3->128 (151,680) + DBlock 128 down (311,680) + 2 DBlocks 128 (295,168 each)
#        + Dense 128->1 (129)                                                               = 1,053,825
#   G48: Dense 128->6*6*512 (2,377,728) + GBlocks 512->256->128->64 (1,902,848 + 476,288 + 119,360)
#        + BN 128 + conv3x3 64->3 (1,731)                                                   = 4,878,083
#   D48: optimized 3->64 (38,976) + 64->128 (119,104) + 128->256 (475,776) + 256->512 (1,901,824)
#        + 512->1024 (7,604,736) + Dense 1024->1 (1,025)                                    = 10,141,441
# The SNGAN paper quotes no counts; the ~4.3M / ~1.0M usually cited for SNGAN on CIFAR-10 are these.
@pytest.mark.parametrize(
  "cls, size, expected",
  [
    (sngan.SNGANGenerator, 32, 4_276_739),
    (sngan.SNGANDiscriminator, 32, 1_053_825),
    (sngan.SNGANGenerator, 48, 4_878_083),
    (sngan.SNGANDiscriminator, 48, 10_141_441),
  ],
)
def test_full_size_parameter_counts_match_mimicry(cls, size, expected):
  model = cls(image_size=size)
  x = jnp.zeros((1, 128)) if cls is sngan.SNGANGenerator else jnp.zeros((1, size, size, 3))
  variables = jax.eval_shape(lambda: model.init(KEY, x, train=False))
  assert param_count(variables["params"]) == expected


def test_registries_and_bad_sizes():
  assert sngan.GENERATORS == {"sngan": sngan.SNGANGenerator}
  assert sngan.DISCRIMINATORS == {"sngan": sngan.SNGANDiscriminator}
  assert sngan.SNGANGenerator(image_size=48).block_channels() == (512, 256, 128, 64)
  assert sngan.SNGANDiscriminator(image_size=48).block_specs()[-1] == (1024, False)
  with pytest.raises(ValueError, match="multiple of 8"):
    jax.eval_shape(lambda: sngan.SNGANGenerator(image_size=20).init(KEY, jnp.zeros((1, 8)), train=False))
  with pytest.raises(ValueError, match="layout"):
    sngan.resolve_layout(32, "imagenet")
