"""Data augmentation inside the compiled step: the random jitter of Pix2Pix and CycleGAN.

* `random_jitter`: resize-then-random-crop and random mirroring (Isola et
  al., 2017, appendix 6.2), drawn from an explicit key, so augmentation is a
  pure function of (seed, step) and resumes bit-exactly while the input
  pipeline stays deterministic;
* `jitter_pair`: the same crop and flip for aligned inputs and targets;
* `default_jitter_size`: the papers' 286-for-256 resolution at any size;
* `Jitter`: the three settings (size, interpolation, flip) as one validated
  value, as the Pix2Pix and CycleGAN configs hold them.
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
