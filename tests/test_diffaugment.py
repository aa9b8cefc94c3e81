"""DiffAugment (Zhao et al., 2020) and the consistency-regularisation augmentation of `jaxgan.augment`.

Every random op is checked against its own draws: the test draws the
parameters from the key with the module's ``draw_*`` function, then compares
the op's output with the transform at those parameters, computed here
independently (NumPy ports of the authors' DiffAugment_pytorch.py gathers and
scatters, ``numpy.pad(mode="reflect")``). Images are tiny (8x8 to 32x32).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import augment
from jaxgan.errors import ConfigError

KEY = jax.random.key(0)


def _images(n, h, w, c=3, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (n, h, w, c)), jnp.float32)


# ---------------------------------------------------------------------------- NumPy ports of the authors' code


def _authors_translation(x, translation_y, translation_x):
  """rand_translation of DiffAugment_pytorch.py (NHWC): pad by one zero, gather x_pad[i + t + 1] clamped."""
  n, h, w, _ = x.shape
  pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.empty_like(x)
  for b in range(n):
    rows = np.clip(np.arange(h) + translation_y[b] + 1, 0, h + 1)
    cols = np.clip(np.arange(w) + translation_x[b] + 1, 0, w + 1)
    out[b] = pad[b][rows][:, cols]
  return out


def _authors_cutout_mask(n, h, w, offset_y, offset_x, size):
  """rand_cutout of DiffAugment_pytorch.py: a ones mask with the square's clamped indices scattered to 0."""
  mask = np.ones((n, h, w), np.float32)
  for b in range(n):
    rows = np.clip(np.arange(size[0]) + offset_y[b] - size[0] // 2, 0, h - 1)
    cols = np.clip(np.arange(size[1]) + offset_x[b] - size[1] // 2, 0, w - 1)
    mask[b][np.ix_(rows, cols)] = 0
  return mask


# ---------------------------------------------------------------------------- translation


def test_translation_moves_a_bright_pixel_by_exactly_the_drawn_shift():
  n, h, w, (r, c) = 64, 16, 16, (1, 14)
  x = np.zeros((n, h, w, 3), np.float32)
  x[:, r, c] = 1.0
  tx, ty = map(np.asarray, augment.draw_translation(KEY, n, h, w))
  out = np.asarray(augment.rand_translation(KEY, jnp.asarray(x)))
  inside = 0
  for b in range(n):
    expected = np.zeros((h, w, 3), np.float32)
    i, j = r + ty[b], c + tx[b]
    if 0 <= i < h and 0 <= j < w:
      expected[i, j] = 1.0
      inside += 1
    np.testing.assert_array_equal(out[b], expected, err_msg=f"sample {b}: tx={tx[b]}, ty={ty[b]}")
  assert 0 < inside < n  # both cases seen: moved within the frame, and out of it


def test_translate_at_explicit_shifts_with_zero_padding():
  x = np.zeros((4, 8, 8, 1), np.float32)
  x[:, 2, 5] = 1.0
  out = np.asarray(augment.translate(jnp.asarray(x), jnp.array([2, -5, 3, 0]), jnp.array([-2, 1, 0, 20])))
  assert out[0, 0, 7] == 1 and out[0].sum() == 1  # right 2, up 2
  assert out[1, 3, 0] == 1 and out[1].sum() == 1  # left 5, down 1
  assert out[2].sum() == 0  # pushed out on the right
  assert out[3].sum() == 0  # shifted by more than the side
  np.testing.assert_array_equal(augment.translate(jnp.asarray(x), 0, 0), x)


def test_translation_matches_the_authors_padded_gather_with_opposite_sign():
  x = np.asarray(_images(2, 8, 12))
  sy, sx = augment.translation_shift(8, 12)
  assert (sy, sx) == (1, 2)
  for ty in range(-sy, sy + 1):
    for tx in range(-sx, sx + 1):
      ours = augment.translate(jnp.asarray(x), tx, ty)
      theirs = _authors_translation(x, [-ty] * 2, [-tx] * 2)
      np.testing.assert_array_equal(ours, theirs, err_msg=f"tx={tx}, ty={ty}")


def test_translation_draws_lie_in_range_and_hit_both_ends():
  assert augment.translation_shift(32, 32) == (4, 4)
  assert augment.translation_shift(64, 16) == (8, 2)
  tx, ty = map(np.asarray, augment.draw_translation(KEY, 2000, 32, 16))
  assert (tx.min(), tx.max()) == (-2, 2)
  assert (ty.min(), ty.max()) == (-4, 4)
  assert tx.shape == ty.shape == (2000,)
  assert not np.array_equal(tx[:100], ty[:100])  # x and y drawn independently


# ---------------------------------------------------------------------------- cutout


@pytest.mark.parametrize("h, w", [(8, 8), (6, 10)])
def test_cutout_zeroes_exactly_the_drawn_square_clamped_at_the_borders(h, w):
  n = 64
  size = augment.cutout_size(h, w)
  assert size == ((4, 4) if h == 8 else (3, 5))
  x = jnp.full((n, h, w, 3), 0.75, jnp.float32)
  many_y, many_x = map(np.asarray, augment.draw_cutout(jax.random.key(7), 2000, h, w))
  assert (many_y.min(), many_y.max()) == (0, h - size[0] % 2)  # the authors' randint(0, h + (1 - size % 2))
  assert (many_x.min(), many_x.max()) == (0, w - size[1] % 2)
  cy, cx = map(np.asarray, augment.draw_cutout(KEY, n, h, w))
  out = np.asarray(augment.rand_cutout(KEY, x))
  clamped = 0
  for b in range(n):
    top, left = cy[b] - size[0] // 2, cx[b] - size[1] // 2
    expected = np.full((h, w), 0.75, np.float32)
    expected[max(top, 0) : top + size[0], max(left, 0) : left + size[1]] = 0
    clamped += top < 0 or left < 0 or top + size[0] > h or left + size[1] > w
    for ch in range(3):
      np.testing.assert_array_equal(out[b, :, :, ch], expected, err_msg=f"sample {b}: cy={cy[b]}, cx={cx[b]}")
  assert 0 < clamped < n  # both whole squares and squares clamped at a border
  np.testing.assert_array_equal(out, 0.75 * np.repeat(_authors_cutout_mask(n, h, w, cy, cx, size)[..., None], 3, -1))


def test_cutout_at_explicit_offsets():
  x = jnp.ones((3, 8, 8, 1))
  out = np.asarray(augment.cutout(x, jnp.array([4, 0, 8]), jnp.array([4, 7, 1]), 4))[..., 0]
  assert out[0, 2:6, 2:6].sum() == 0 and out[0].sum() == 64 - 16
  assert out[1, 0:2, 5:8].sum() == 0 and out[1].sum() == 64 - 6  # clamped at the top right
  assert out[2, 6:8, 0:3].sum() == 0 and out[2].sum() == 64 - 6  # clamped at the bottom left


# ---------------------------------------------------------------------------- color


def test_color_draws_lie_in_their_ranges():
  shift, sat, con = map(np.asarray, augment.draw_color(KEY, 4096))
  assert -0.5 <= shift.min() < -0.49 and 0.49 < shift.max() < 0.5
  assert 0.0 <= sat.min() < 0.01 and 1.99 < sat.max() < 2.0
  assert 0.5 <= con.min() < 0.51 and 1.49 < con.max() < 1.5
  assert abs(np.corrcoef(shift, sat)[0, 1]) < 0.1 and abs(np.corrcoef(sat, con)[0, 1]) < 0.1


def test_color_equals_the_formulas_with_the_drawn_factors():
  x = np.asarray(_images(5, 8, 8))
  shift, sat, con = (np.asarray(a)[:, None, None, None] for a in augment.draw_color(KEY, 5))
  y = x + shift
  y = (y - y.mean(3, keepdims=True)) * sat + y.mean(3, keepdims=True)
  y = (y - y.mean((1, 2, 3), keepdims=True)) * con + y.mean((1, 2, 3), keepdims=True)
  out = np.asarray(augment.rand_color(KEY, jnp.asarray(x)))
  np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-6)
  assert np.abs(out).max() > 1  # not clipped: brightness and saturation leave [-1, 1]


def test_saturation_keeps_gray_images_and_means_contrast_keeps_the_sample_mean():
  x = _images(4, 8, 8)
  gray = jnp.repeat(jnp.round(x[..., :1] * 8) / 8, 3, axis=-1)  # eighths: the channel mean is exact
  factors = jnp.array([0.0, 0.3, 1.0, 1.9])
  np.testing.assert_array_equal(augment.saturation(gray, factors), gray)
  sat = augment.saturation(x, factors)
  np.testing.assert_allclose(sat.mean(3), x.mean(3), atol=1e-6)
  np.testing.assert_allclose(sat.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-6)
  con = augment.contrast(x, jnp.array([0.5, 0.9, 1.2, 1.49]))
  np.testing.assert_allclose(con.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-6)
  assert not np.allclose(sat, x) and not np.allclose(con, x)
  np.testing.assert_allclose(augment.saturation(x, 0.0), jnp.broadcast_to(x.mean(3, keepdims=True), x.shape))


# ---------------------------------------------------------------------------- the whole DiffAugment


def test_diff_augment_composes_the_ops_in_order_with_one_key_each():
  x = _images(4, 16, 16)
  out = augment.diff_augment(KEY, x, "color,translation,cutout")
  expected = augment.rand_color(augment.op_key(KEY, 0), x)
  expected = augment.rand_translation(augment.op_key(KEY, 1), expected)
  expected = augment.rand_cutout(augment.op_key(KEY, 2), expected)
  np.testing.assert_array_equal(out, expected)
  reordered = augment.diff_augment(KEY, x, ("cutout", "translation", "color"))
  assert not np.allclose(reordered, out)
  np.testing.assert_array_equal(augment.DiffAugment()(KEY, x), out)
  np.testing.assert_array_equal(augment.DiffAugment("")(KEY, x), x)
  np.testing.assert_array_equal(augment.diff_augment(KEY, x, ()), x)


def test_diff_augment_is_deterministic_per_key_varies_across_keys_and_samples_and_jits():
  x = jnp.broadcast_to(_images(1, 16, 16), (4, 16, 16, 3))  # four copies of one image
  aug = augment.DiffAugment()
  a, b = aug(KEY, x), aug(KEY, x)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(aug(jax.random.key(1), x), a)
  assert not np.allclose(a[0], a[1])  # every sample draws its own parameters
  jitted = jax.jit(augment.diff_augment, static_argnames="policy")(KEY, x, policy=augment.DEFAULT_POLICY)
  np.testing.assert_allclose(jitted, a, rtol=1e-6, atol=1e-6)
  assert a.shape == x.shape and a.dtype == x.dtype


def test_gradients_flow_through_diff_augment_to_the_generator_and_match_finite_differences():
  with jax.enable_x64(True):
    z = jax.random.normal(jax.random.key(1), (2, 4), jnp.float64)
    w0 = 0.5 * jax.random.normal(jax.random.key(2), (4, 8 * 8 * 3), jnp.float64)
    weights = jax.random.normal(jax.random.key(3), (2, 8, 8, 3), jnp.float64)

    def generator(w):
      return jnp.tanh(z @ w).reshape(2, 8, 8, 3)

    def loss(w):
      return jnp.sum(weights * augment.diff_augment(KEY, generator(w), augment.DEFAULT_POLICY) ** 2)

    grad = np.asarray(jax.jit(jax.grad(loss))(w0))
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    plain = np.asarray(jax.grad(lambda w: jnp.sum(weights * generator(w) ** 2))(w0))
    assert not np.allclose(grad, plain)  # the augmentation is in the gradient

    eps = 1e-5
    steps = eps * jnp.eye(w0.size, dtype=jnp.float64).reshape(-1, *w0.shape)
    batched = jax.jit(jax.vmap(loss))
    numeric = np.asarray((batched(w0 + steps) - batched(w0 - steps)) / (2 * eps)).reshape(w0.shape)
  np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-3 * np.abs(numeric).max())


# ---------------------------------------------------------------------------- settings


def test_unknown_policy_names_raise_config_error_naming_the_valid_ones():
  with pytest.raises(ConfigError, match="zoom.*color, translation, cutout"):
    augment.DiffAugment("color,zoom")
  with pytest.raises(ConfigError, match="translate"):
    augment.diff_augment(KEY, _images(1, 8, 8), "translate")
  with pytest.raises(ConfigError):
    augment.DiffAugment("color,,cutout")
  assert augment.DiffAugment(" color , cutout ").ops == ("color", "cutout")
  assert augment.DiffAugment("").ops == ()
  assert augment.parse_policy(("translation", "color")) == ("translation", "color")


# ---------------------------------------------------------------------------- consistency regularisation


def _reflect_reference(x, flip, tx, ty, m):
  out = np.empty_like(x)
  h, w = x.shape[1:3]
  for b in range(x.shape[0]):
    im = x[b, :, ::-1] if flip[b] else x[b]
    pad = np.pad(im, ((m, m), (m, m), (0, 0)), mode="reflect")
    out[b] = pad[m - ty[b] : m - ty[b] + h, m - tx[b] : m - tx[b] + w]
  return out


def test_consistency_augment_flips_and_translates_as_drawn():
  n, h, w, (r, c) = 32, 16, 16, (5, 3)
  x = np.zeros((n, h, w, 2), np.float32)
  x[:, r, c] = 1.0
  flip, tx, ty = map(np.asarray, augment.draw_consistency(KEY, n, augment.default_consistency_shift(h)))
  out = np.asarray(augment.consistency_augment(KEY, jnp.asarray(x)))
  for b in range(n):
    expected = np.zeros((h, w, 2), np.float32)
    expected[r + ty[b], (w - 1 - c if flip[b] else c) + tx[b]] = 1.0
    np.testing.assert_array_equal(out[b], expected, err_msg=f"sample {b}: flip={flip[b]}, tx={tx[b]}, ty={ty[b]}")
  assert 0 < flip.sum() < n

  # Reflection padding at the borders, against numpy.pad(mode="reflect").
  x = np.asarray(_images(n, 8, 8))
  flip, tx, ty = map(np.asarray, augment.draw_consistency(KEY, n, 3))
  out = augment.ConsistencyAugment(max_shift=3)(KEY, jnp.asarray(x))
  np.testing.assert_array_equal(out, _reflect_reference(x, flip, tx, ty, 3))
  # Shifts beyond the side keep reflecting, as numpy.pad does for pads wider than the image.
  big = [9, -13, 20, 0]
  out = augment.translate_reflect(jnp.asarray(x[:4]), jnp.array(big), jnp.array(big[::-1]))
  np.testing.assert_array_equal(out, _reflect_reference(x[:4], [False] * 4, big, big[::-1], 20))


def test_consistency_draws_and_shape_dtype_and_settings():
  assert augment.default_consistency_shift(32) == 4
  flip, tx, ty = map(np.asarray, augment.draw_consistency(KEY, 2000, 4))
  assert flip.dtype == bool and 0.45 < flip.mean() < 0.55
  assert (tx.min(), tx.max(), ty.min(), ty.max()) == (-4, 4, -4, 4)
  for dtype in (jnp.float32, jnp.bfloat16):
    x = _images(3, 8, 8).astype(dtype)
    out = augment.consistency_augment(KEY, x)
    assert out.shape == x.shape and out.dtype == dtype
  flip = np.asarray(augment.draw_consistency(KEY, 3, 0)[0])
  flipped_only = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
  np.testing.assert_array_equal(augment.consistency_augment(KEY, x, max_shift=0), flipped_only)
  with pytest.raises(ConfigError, match="max_shift"):
    augment.consistency_augment(KEY, x, max_shift=8)
  with pytest.raises(ConfigError, match="max_shift"):
    augment.ConsistencyAugment(max_shift=-1)
