"""Data augmentation inside the compiled step: the random jitter of Pix2Pix and CycleGAN.

* `random_jitter`: resize-then-random-crop and random mirroring (Isola et
  al., 2017, appendix 6.2), drawn from an explicit key, so augmentation is a
  pure function of (seed, step) and resumes bit-exactly while the input
  pipeline stays deterministic;
* `jitter_pair`: the same crop and flip for aligned inputs and targets;
* `default_jitter_size`: the papers' 286-for-256 resolution at any size;
* `Jitter`: the three settings (size, interpolation, flip) as one validated
  value, as the Pix2Pix and CycleGAN configs hold them.

Differentiable augmentation of Zhao et al. (2020), applied to real and fake
images alike, inside the loss, so the generator's gradients flow through it:

* `diff_augment` and its validated value `DiffAugment`: a policy of "color",
  "translation" and "cutout", as the authors' DiffAugment_pytorch.py;
* per op, the transform at explicit parameters (`brightness`, `saturation`,
  `contrast`, `color`, `translate`, `cutout`), the draw of those parameters
  from a key (`draw_color`, `draw_translation`, `draw_cutout`), and the two
  composed (`rand_color`, `rand_translation`, `rand_cutout`).

The augmentation of consistency regularisation (Zhang et al., 2020; Zhao et
al., 2021): `consistency_augment` and its value `ConsistencyAugment`, a random
horizontal flip (`flip_horizontal`) and a reflection-padded integer
translation (`translate_reflect`), drawn by `draw_consistency`.

Every random function is a pure function of an explicit key, works under
`jax.jit` (the policy and the ratios are static), and is differentiable with
respect to the images.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxgan.errors import ConfigError

Array = jax.Array
"""@private The array type of the annotations (`jax.Array`), kept out of the API reference."""


def default_jitter_size(image_size: int) -> int:
  """The Pix2Pix/CycleGAN jitter resolution scaled to ``image_size``: 286/256 of it.

  256 -> 286, 128 -> 143, 64 -> 72, 32 -> 36.
  """
  return int(round(image_size * 286 / 256))


JITTER_METHODS = ("bilinear", "nearest")


def random_jitter(key: Array, images: Array, jitter_size: int, flip: bool, method: str = "bilinear") -> Array:
  """Random jitter of Isola et al. (2017, appendix 6.2): resize an (H, W) batch to
  ``jitter_size`` x ``jitter_size``, crop a random H x W window per example, and
  mirror each example left-right with probability 1/2.

  ``method`` is the resize interpolation: "bilinear" (as for photos), or
  "nearest", which keeps binary images (e.g. 2-px outlines at 32 px) crisp
  where bilinear up-sampling would blur them into gray.
  ``jitter_size = 0`` skips the resize/crop and ``flip = False`` the mirror.
  Paired data must be jittered as one tensor (inputs and targets
  concatenated on channels) so both get the same crop and flip.
  """
  b, h, w, c = images.shape
  crop_key, flip_key = jax.random.split(key)
  if jitter_size:
    if jitter_size < max(h, w):
      raise ConfigError(f"jitter_size {jitter_size} is smaller than the {h}x{w} images")
    if method not in JITTER_METHODS:
      raise ConfigError(f"unknown jitter method {method!r}: choose one of {', '.join(JITTER_METHODS)}")
    big = jax.image.resize(images, (b, jitter_size, jitter_size, c), method=method)
    ky, kx = jax.random.split(crop_key)
    top = jax.random.randint(ky, (b,), 0, jitter_size - h + 1)
    left = jax.random.randint(kx, (b,), 0, jitter_size - w + 1)
    images = jax.vmap(lambda im, t, left_: jax.lax.dynamic_slice(im, (t, left_, 0), (h, w, c)))(big, top, left)
  if flip:
    mirror = jax.random.bernoulli(flip_key, 0.5, (b,))
    images = jnp.where(mirror[:, None, None, None], images[:, :, ::-1], images)
  return images


def jitter_pair(
  key: Array, inputs: Array, targets: Array, jitter_size: int, flip: bool, method: str = "bilinear"
) -> tuple[Array, Array]:
  """`random_jitter` applied identically to aligned inputs and targets."""
  if not jitter_size and not flip:
    return inputs, targets
  both = random_jitter(key, jnp.concatenate([inputs, targets], axis=-1), jitter_size, flip, method)
  return both[..., : inputs.shape[-1]], both[..., inputs.shape[-1] :]


@dataclasses.dataclass(frozen=True)
class Jitter:
  """Settings of `random_jitter`.

  Attributes:
    size: resize-then-crop side (0: no resize and crop).
    method: resize interpolation, "bilinear" or "nearest".
    flip: random left-right mirroring.
  """

  size: int = 0
  method: str = "bilinear"
  flip: bool = False

  def __post_init__(self):
    if self.size < 0:
      raise ConfigError(f"jitter size must be >= 0, got {self.size}")
    if self.method not in JITTER_METHODS:
      raise ConfigError(f"unknown jitter method {self.method!r}: choose one of {', '.join(JITTER_METHODS)}")

  def __call__(self, key: Array, images: Array) -> Array:
    return random_jitter(key, images, self.size, self.flip, self.method)

  def pair(self, key: Array, inputs: Array, targets: Array) -> tuple[Array, Array]:
    return jitter_pair(key, inputs, targets, self.size, self.flip, self.method)


# ---------------------------------------------------------------------------- DiffAugment
# DiffAugment (Zhao, Liu, Lin, Zhu & Han, 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

DIFFAUGMENT_OPS = ("color", "translation", "cutout")
"""The op names of a `diff_augment` policy, as the authors' ``AUGMENT_FNS``."""

DEFAULT_POLICY = "color,translation,cutout"
"""The authors' policy for their CIFAR-10 and 100-shot results."""

TRANSLATION_RATIO = 0.125
"""Largest translation as a fraction of the image side (the authors' ``rand_translation`` default, 1/8)."""

CUTOUT_RATIO = 0.5
"""Cutout side as a fraction of the image side (the authors' ``rand_cutout`` default, 1/2)."""


def _per_sample(value, n: int, dtype=None) -> Array:
  """``value`` (a scalar or one entry per sample) as an (n,) array."""
  return jnp.broadcast_to(jnp.asarray(value, dtype), (n,))


def _uniform(key: Array, n: int, dtype) -> Array:
  """n draws of U[0, 1) in ``dtype`` (float32 for non-float images), one flat draw."""
  dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32
  return jax.random.uniform(key, (n,), dtype=dtype)


def brightness(x: Array, shift: Array) -> Array:
  """Brightness of Zhao et al. (2020): ``x + shift``, one shift per sample (``(N,)`` or a scalar).

  `draw_color` draws ``shift = U[0, 1) - 0.5`` in [-0.5, 0.5). No clipping.
  """
  return x + _per_sample(shift, x.shape[0], x.dtype)[:, None, None, None]


def saturation(x: Array, factor: Array) -> Array:
  """Saturation of Zhao et al. (2020): ``(x - m) * factor + m``, ``m`` the mean over channels of each pixel.

  One factor per sample; `draw_color` draws ``factor = 2 U[0, 1)`` in [0, 2).
  A gray image (all channels equal) is unchanged, and so is every pixel's
  channel mean. No clipping.
  """
  mean = jnp.mean(x, axis=3, keepdims=True)
  return (x - mean) * _per_sample(factor, x.shape[0], x.dtype)[:, None, None, None] + mean


def contrast(x: Array, factor: Array) -> Array:
  """Contrast of Zhao et al. (2020): ``(x - m) * factor + m``, ``m`` the mean of each sample over (H, W, C).

  One factor per sample; `draw_color` draws ``factor = U[0, 1) + 0.5`` in
  [0.5, 1.5). The sample's mean is unchanged. No clipping.
  """
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) * _per_sample(factor, x.shape[0], x.dtype)[:, None, None, None] + mean


def color(x: Array, shift: Array, saturation_factor: Array, contrast_factor: Array) -> Array:
  """The "color" op at explicit parameters: `brightness`, then `saturation`, then `contrast`.

  As the authors' code, the result is not clipped to [-1, 1]: brightness
  alone moves values by up to 0.5 and saturation scales deviations by up to 2.
  """
  return contrast(saturation(brightness(x, shift), saturation_factor), contrast_factor)


def draw_color(key: Array, n: int, dtype=jnp.float32) -> tuple[Array, Array, Array]:
  """The "color" parameters of n samples: ``(shift, saturation_factor, contrast_factor)``, each ``(n,)``.

  shift = U[0, 1) - 0.5 in [-0.5, 0.5); saturation_factor = 2 U[0, 1) in
  [0, 2); contrast_factor = U[0, 1) + 0.5 in [0.5, 1.5); the three from
  ``jax.random.split(key, 3)`` in that order, drawn in ``dtype`` (the images'
  dtype, as the authors draw in ``x.dtype``).
  """
  kb, ks, kc = jax.random.split(key, 3)
  return _uniform(kb, n, dtype) - 0.5, _uniform(ks, n, dtype) * 2, _uniform(kc, n, dtype) + 0.5


def rand_color(key: Array, x: Array) -> Array:
  """The "color" op: `color` at parameters from `draw_color` (key, N, x.dtype)."""
  return color(x, *draw_color(key, x.shape[0], x.dtype))


def _shifted_index(size: int, shift: Array) -> tuple[Array, Array]:
  """Source index ``i - shift`` of each output index i per sample, clamped to [0, size), and whether it was inside."""
  src = jnp.arange(size)[None, :] - shift[:, None]
  return jnp.clip(src, 0, size - 1), (src >= 0) & (src < size)


def translate(x: Array, tx: Array, ty: Array) -> Array:
  """Integer translation with zero padding: ``out[n, i, j] = x[n, i - ty[n], j - tx[n]]``, 0 where that is outside.

  Sign convention: positive ``tx`` moves the content right (towards larger
  column index j), positive ``ty`` moves it down (towards larger row index i).
  ``tx`` and ``ty`` are integers, one per sample (``(N,)``) or scalars; any
  size is allowed (a shift of at least the side leaves zeros).

  The authors' ``rand_translation`` pads by one zero and gathers
  ``x_pad[i + t + 1]`` with the index clamped into the padded image, i.e.
  ``out[i] = x[i + t]``, 0 outside: the same map with the opposite sign,
  and, since t is drawn symmetrically, the same distribution.
  Implemented as two gathers (``take_along_axis``) and a mask, so it is
  differentiable in ``x`` (the gradient is the inverse shift).
  """
  n, h, w, _ = x.shape
  rows, row_ok = _shifted_index(h, _per_sample(ty, n, jnp.int32))
  cols, col_ok = _shifted_index(w, _per_sample(tx, n, jnp.int32))
  out = jnp.take_along_axis(x, rows[:, :, None, None], axis=1)
  out = jnp.take_along_axis(out, cols[:, None, :, None], axis=2)
  inside = row_ok[:, :, None, None] & col_ok[:, None, :, None]
  return jnp.where(inside, out, jnp.zeros((), x.dtype))


def translation_shift(height: int, width: int, ratio: float = TRANSLATION_RATIO) -> tuple[int, int]:
  """Largest shift ``(rows, columns)`` of the "translation" op: ``int(side * ratio + 0.5)`` (4 at 32 px, 1/8)."""
  return int(height * ratio + 0.5), int(width * ratio + 0.5)


def draw_translation(
  key: Array, n: int, height: int, width: int, ratio: float = TRANSLATION_RATIO
) -> tuple[Array, Array]:
  """The "translation" shifts of n samples, ``(tx, ty)``, int32 ``(n,)`` each, for `translate`.

  With ``(sy, sx) = translation_shift(height, width, ratio)``: ``tx`` uniform
  on the integers of [-sx, sx] and ``ty`` on those of [-sy, sy], from
  ``jax.random.split(key)`` (tx first), as the authors' ``torch.randint(-s, s + 1)``.
  """
  sy, sx = translation_shift(height, width, ratio)
  kx, ky = jax.random.split(key)
  return jax.random.randint(kx, (n,), -sx, sx + 1), jax.random.randint(ky, (n,), -sy, sy + 1)


def rand_translation(key: Array, x: Array, ratio: float = TRANSLATION_RATIO) -> Array:
  """The "translation" op: `translate` by shifts from `draw_translation` (key, N, H, W, ratio)."""
  n, h, w, _ = x.shape
  return translate(x, *draw_translation(key, n, h, w, ratio))


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
  return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def cutout(x: Array, cy: Array, cx: Array, size: int | tuple[int, int]) -> Array:
  """Cutout (DeVries & Taylor, 2017) as Zhao et al. (2020): zero a square per sample.

  With ``(sh, sw) = size`` (an int for a square), sample n loses the rows
  ``cy[n] - sh // 2 <= i < cy[n] - sh // 2 + sh`` and the columns
  ``cx[n] - sw // 2 <= j < cx[n] - sw // 2 + sw``, clamped to the image, in
  every channel: ``out = x * mask``, as the authors (whose clamped scatter
  of the square's indices zeroes exactly this clamped rectangle).
  ``cy``, ``cx``: integers, one per sample or scalars.
  """
  n, h, w, _ = x.shape
  sh, sw = _size_pair(size)
  top = _per_sample(cy, n, jnp.int32)[:, None] - sh // 2
  left = _per_sample(cx, n, jnp.int32)[:, None] - sw // 2
  i, j = jnp.arange(h)[None, :], jnp.arange(w)[None, :]
  in_rows = (i >= top) & (i < top + sh)
  in_cols = (j >= left) & (j < left + sw)
  keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
  return x * keep[..., None].astype(x.dtype)


def cutout_size(height: int, width: int, ratio: float = CUTOUT_RATIO) -> tuple[int, int]:
  """Side ``(rows, columns)`` of the "cutout" square: ``int(side * ratio + 0.5)`` (16 at 32 px, 1/2)."""
  return int(height * ratio + 0.5), int(width * ratio + 0.5)


def draw_cutout(key: Array, n: int, height: int, width: int, ratio: float = CUTOUT_RATIO) -> tuple[Array, Array]:
  """The "cutout" offsets of n samples, ``(cy, cx)``, int32 ``(n,)`` each, for `cutout` with `cutout_size`.

  As the authors: with ``(sh, sw) = cutout_size(height, width, ratio)``,
  ``cy`` uniform on the integers of [0, height + (1 - sh % 2)) and ``cx`` on
  [0, width + (1 - sw % 2)), from ``jax.random.split(key)`` (cy first).
  """
  sh, sw = cutout_size(height, width, ratio)
  ky, kx = jax.random.split(key)
  return (
    jax.random.randint(ky, (n,), 0, height + (1 - sh % 2)),
    jax.random.randint(kx, (n,), 0, width + (1 - sw % 2)),
  )


def rand_cutout(key: Array, x: Array, ratio: float = CUTOUT_RATIO) -> Array:
  """The "cutout" op: `cutout` of side `cutout_size` at offsets from `draw_cutout` (key, N, H, W, ratio)."""
  n, h, w, _ = x.shape
  return cutout(x, *draw_cutout(key, n, h, w, ratio), cutout_size(h, w, ratio))


_DIFFAUGMENT_FNS = {"color": rand_color, "translation": rand_translation, "cutout": rand_cutout}


def parse_policy(policy: str | tuple[str, ...]) -> tuple[str, ...]:
  """The op names of a policy: "color,translation,cutout" (spaces ignored) or a tuple of names; "" -> ().

  Raises:
    ConfigError: an unknown or empty op name.
  """
  if isinstance(policy, str):
    ops = tuple(op.strip() for op in policy.split(",")) if policy.strip() else ()
  else:
    ops = tuple(policy)
  for op in ops:
    if op not in _DIFFAUGMENT_FNS:
      raise ConfigError(f"unknown DiffAugment op {op!r} in policy {policy!r}: choose from {', '.join(DIFFAUGMENT_OPS)}")
  return ops


def op_key(key: Array, index: int) -> Array:
  """The key of the policy's op number ``index`` (from 0): ``jax.random.fold_in(key, index)``."""
  return jax.random.fold_in(key, index)


def diff_augment(key: Array, x: Array, policy: str | tuple[str, ...] = DEFAULT_POLICY) -> Array:
  """DiffAugment (Zhao et al., 2020): the policy's ops applied in order to an NHWC batch in [-1, 1].

  Op number k (from 0) draws with `op_key` (key, k), so
  ``diff_augment(key, x, ("translation",)) == rand_translation(op_key(key, 0), x)``;
  every sample draws its own parameters. The ops:

  * "color": `rand_color` (brightness, saturation, contrast; not clipped);
  * "translation": `rand_translation`, up to 1/8 of the side, zero padding;
  * "cutout": `rand_cutout`, a square of half the side set to 0.

  The same function augments real and generated images before the
  discriminator, in both players' losses; it is linear in ``x`` for fixed
  draws, so gradients reach the generator. ``policy`` must be static under
  `jax.jit`. An empty policy is the identity.
  """
  if x.ndim != 4:
    raise ValueError(f"diff_augment expects an NHWC batch, got shape {x.shape}")
  for index, op in enumerate(parse_policy(policy)):
    x = _DIFFAUGMENT_FNS[op](op_key(key, index), x)
  return x


@dataclasses.dataclass(frozen=True)
class DiffAugment:
  """A validated `diff_augment` policy, callable as ``(key, images) -> images``.

  Attributes:
    policy: comma-separated op names from `DIFFAUGMENT_OPS`, applied in
      order ("" for none).
  """

  policy: str = DEFAULT_POLICY

  def __post_init__(self):
    parse_policy(self.policy)

  @property
  def ops(self) -> tuple[str, ...]:
    """The policy's op names, in order."""
    return parse_policy(self.policy)

  def __call__(self, key: Array, images: Array) -> Array:
    return diff_augment(key, images, self.ops)


# ---------------------------------------------------------------------------- consistency regularisation
# The augmentation of consistency regularisation (Zhang, Zhang, Odena & Lee, 2020, "Consistency Regularization for
# Generative Adversarial Networks"; Zhao, Singh, Lee, Zhang, Odena & Zhang, 2021, "Improved Consistency
# Regularization for GANs").


def default_consistency_shift(image_size: int) -> int:
  """The largest translation of `consistency_augment` by default: ``image_size // 8`` (4 px at 32 px)."""
  return image_size // 8


def flip_horizontal(x: Array, flip: Array) -> Array:
  """Mirror left-right (``out[n, i, j] = x[n, i, W - 1 - j]``) the samples where ``flip`` (bool, ``(N,)``) is set."""
  return jnp.where(_per_sample(flip, x.shape[0], bool)[:, None, None, None], x[:, :, ::-1], x)


def _reflected_index(size: int, shift: Array) -> Array:
  """Source index ``i - shift`` of each output index i per sample, reflected into [0, size) (edge not repeated)."""
  src = jnp.arange(size)[None, :] - shift[:, None]
  if size == 1:
    return jnp.zeros_like(src)
  period = 2 * (size - 1)
  src = jnp.mod(src, period)
  return jnp.where(src > size - 1, period - src, src)


def translate_reflect(x: Array, tx: Array, ty: Array) -> Array:
  """Integer translation with reflection padding: ``out[n, i, j] = x[n, r(i - ty[n]), r(j - tx[n])]``.

  ``r`` reflects an index about the edges without repeating them, as
  ``numpy.pad(mode="reflect")`` and ``tf.pad(mode="REFLECT")``: -1 -> 1,
  -2 -> 2, H -> H - 2 (for shifts beyond the side it keeps reflecting).
  Signs as `translate`: positive ``tx`` moves the content right, positive
  ``ty`` down. ``tx``, ``ty``: integers, one per sample or scalars.
  """
  n, h, w, _ = x.shape
  rows = _reflected_index(h, _per_sample(ty, n, jnp.int32))
  cols = _reflected_index(w, _per_sample(tx, n, jnp.int32))
  out = jnp.take_along_axis(x, rows[:, :, None, None], axis=1)
  return jnp.take_along_axis(out, cols[:, None, :, None], axis=2)


def draw_consistency(key: Array, n: int, max_shift: int) -> tuple[Array, Array, Array]:
  """The parameters of `consistency_augment` for n samples: ``(flip, tx, ty)``, each ``(n,)``.

  ``flip`` is Bernoulli(1/2) (bool); ``tx`` and ``ty`` are uniform on the
  integers of [-max_shift, max_shift] (int32); from
  ``jax.random.split(key, 3)`` in that order.
  """
  kf, kx, ky = jax.random.split(key, 3)
  return (
    jax.random.bernoulli(kf, 0.5, (n,)),
    jax.random.randint(kx, (n,), -max_shift, max_shift + 1),
    jax.random.randint(ky, (n,), -max_shift, max_shift + 1),
  )


def consistency_augment(key: Array, x: Array, max_shift: int | None = None) -> Array:
  """The augmentation T of consistency regularisation (Zhang et al., 2020; bCR, Zhao et al., 2021).

  Per sample, a random horizontal flip (p = 1/2), then a random integer
  translation by up to ``max_shift`` pixels in x and in y (each uniform on
  [-max_shift, max_shift]) with reflection padding (`translate_reflect`):
  ``out = translate_reflect(flip_horizontal(x, flip), tx, ty)`` with
  ``(flip, tx, ty) = draw_consistency(key, N, max_shift)``.
  ``max_shift = None``: `default_consistency_shift` of the height
  (H // 8, 4 px at 32 px). Shape and dtype are preserved.

  Raises:
    ConfigError: ``max_shift`` negative or not smaller than the image side
      (reflection padding needs a pad smaller than the side).
  """
  n, h, w, _ = x.shape
  shift = default_consistency_shift(h) if max_shift is None else max_shift
  if shift < 0 or shift >= min(h, w):
    raise ConfigError(f"consistency max_shift must be in [0, {min(h, w) - 1}] for {h}x{w} images, got {shift}")
  flip, tx, ty = draw_consistency(key, n, shift)
  return translate_reflect(flip_horizontal(x, flip), tx, ty)


@dataclasses.dataclass(frozen=True)
class ConsistencyAugment:
  """Settings of `consistency_augment`, callable as ``(key, images) -> images``.

  Attributes:
    max_shift: largest translation in pixels (None: H // 8).
  """

  max_shift: int | None = None

  def __post_init__(self):
    if self.max_shift is not None and self.max_shift < 0:
      raise ConfigError(f"consistency max_shift must be >= 0, got {self.max_shift}")

  def __call__(self, key: Array, images: Array) -> Array:
    return consistency_augment(key, images, self.max_shift)
