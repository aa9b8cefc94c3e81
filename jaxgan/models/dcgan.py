"""Convolutional GAN networks: the seed's Keras MNIST "DCGAN" and Radford et al.'s DCGAN.

What lives here:

* :class:`MnistDCGANGenerator` / :class:`MnistDCGANDiscriminator` -- the
  Keras MNIST "DCGAN" of the seed tutorial (dense projection, nearest-neighbour
  up-sampling + 5x5 convolutions in G; 5x5 convolutions with max-pooling and
  dropout in D), with a configurable image size (any multiple of 4: 28 for
  MNIST, 8 for the 8x8 digits).
* :class:`DCGANGenerator` / :class:`DCGANDiscriminator` -- the all-convolutional
  DCGAN of Radford, Metz & Chintala (2015): transposed 4x4 stride-2
  convolutions with BatchNorm and ReLU in G, strided 4x4 convolutions with
  BatchNorm and LeakyReLU(0.2) in D, N(0, 0.02) initialisation. Works for 8, 28
  (7 -> 14 -> 28), 32 and 64 px images with 1 or 3 channels.
* :func:`radford_discriminator_trunk` -- the convolutional part of the Radford
  discriminator, and :func:`radford_discriminator_features` -- the same trunk
  configured by a discriminator's fields (with the input size check), reused
  by the projection discriminator in :mod:`jaxgan.models.cgan`.

Generators map ``(z, labels=None, *, train)`` to NHWC images in [-1, 1];
discriminators map ``(x, labels=None, *, train)`` to raw logits of shape (B,).
These models are unconditional and ignore ``labels``.

``GENERATORS`` and ``DISCRIMINATORS`` map registry names to the module classes;
every class has a ``tiny(**overrides)`` constructor for fast tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models.layers import (
  TinyMixin,
  batch_norm,
  dcgan_bn_scale_init,
  dcgan_init,
  dropout,
  flatten,
  keras_dense_init,
  logit_head,
  radford_base_size,
  upsample_nearest,
)

__all__ = [
  "MnistDCGANGenerator",
  "MnistDCGANDiscriminator",
  "DCGANGenerator",
  "DCGANDiscriminator",
  "radford_num_stages",
  "radford_discriminator_trunk",
  "radford_discriminator_features",
  "GENERATORS",
  "DISCRIMINATORS",
]


# --------------------------------------------------------------------------
# The seed's Keras MNIST "DCGAN"
# --------------------------------------------------------------------------


class MnistDCGANGenerator(TinyMixin, nn.Module):
  """Generator of the seed tutorial's Keras MNIST "DCGAN" (000_*.txt).

  Transcribes the Keras ``Sequential`` generator (with ``b = image_size // 4``;
  ``b = 7`` for MNIST)::

      Dense(hidden=512) -> LeakyReLU(0.2)
      Dense(base_channels * b * b) -> LeakyReLU(0.2) -> BatchNorm
      Reshape(b, b, base_channels)
      UpSampling2D(2, nearest) -> Conv2D(mid_channels, 5x5, same) -> tanh
      UpSampling2D(2, nearest) -> Conv2D(channels, 5x5, same) -> tanh

  The seed listing applies tanh after *both* convolutions; this is kept.
  Kernels use Keras' default Glorot-uniform initialiser, biases zero.
  It is a simplified relative of the DCGAN of Radford et al. (2015),
  "Unsupervised Representation Learning with Deep Convolutional Generative
  Adversarial Networks" (up-sampling + convolution instead of transposed
  convolutions, and a dense projection).

  Attributes:
    image_size: output height = width; must be a multiple of 4 (28 or 8).
    channels: output channels (1).
    hidden: width of the first dense layer (512).
    base_channels: channels of the reshaped projection (128).
    mid_channels: channels of the first 5x5 convolution (64).
    negative_slope: LeakyReLU slope (0.2).
  """

  image_size: int = 28
  channels: int = 1
  hidden: int = 512
  base_channels: int = 128
  mid_channels: int = 64
  negative_slope: float = 0.2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"image_size": 8, "hidden": 16, "base_channels": 4, "mid_channels": 4}

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool = True):
    del labels
    if self.image_size % 4 != 0:
      raise ValueError(f"image_size must be a multiple of 4, got {self.image_size}")
    b = self.image_size // 4
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=keras_dense_init)
    h = flatten(z, self.dtype)
    h = nn.leaky_relu(nn.Dense(self.hidden, name="fc1", **kw)(h), self.negative_slope)
    h = nn.leaky_relu(nn.Dense(self.base_channels * b * b, name="fc2", **kw)(h), self.negative_slope)
    h = batch_norm(train, self.dtype, self.param_dtype, "bn")(h)
    h = h.reshape(h.shape[0], b, b, self.base_channels)
    h = upsample_nearest(h, 2)
    h = jnp.tanh(nn.Conv(self.mid_channels, (5, 5), padding="SAME", name="conv1", **kw)(h))
    h = upsample_nearest(h, 2)
    h = jnp.tanh(nn.Conv(self.channels, (5, 5), padding="SAME", name="conv2", **kw)(h))
    return h.astype(jnp.float32)


class MnistDCGANDiscriminator(TinyMixin, nn.Module):
  """Discriminator of the seed tutorial's Keras MNIST "DCGAN" (000_*.txt).

  Transcribes the Keras ``Sequential`` discriminator::

      Conv2D(256, 5x5, same, init N(0, 0.02)) -> LeakyReLU(0.2) -> MaxPool(2) -> Dropout(0.3)
      Conv2D(512, 5x5, same) -> LeakyReLU(0.2) -> MaxPool(2) -> Dropout(0.3)
      Flatten -> Dense(256) -> LeakyReLU(0.2) -> Dropout(0.3)
      Dense(1)

  The final sigmoid of the listing is left to the loss: the module returns
  the raw logit, shape (B,). Only the first convolution uses the N(0, 0.02)
  initialiser, as in the listing; the rest use Keras' Glorot-uniform default.
  Input height and width must be divisible by 4 (28 -> 14 -> 7, 8 -> 4 -> 2).

  Attributes:
    conv_channels: channels of the two 5x5 convolutions ((256, 512)).
    hidden: width of the dense hidden layer (256).
    dropout: dropout rate (0.3).
    negative_slope: LeakyReLU slope (0.2).
  """

  conv_channels: Sequence[int] = (256, 512)
  hidden: int = 256
  dropout: float = 0.3
  negative_slope: float = 0.2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"conv_channels": (4, 4), "hidden": 16}

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    del labels
    h = jnp.asarray(x, self.dtype)
    for i, ch in enumerate(self.conv_channels):
      init = dcgan_init if i == 0 else keras_dense_init
      h = nn.Conv(
        ch,
        (5, 5),
        padding="SAME",
        kernel_init=init,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=f"conv{i + 1}",
      )(h)
      h = nn.leaky_relu(h, self.negative_slope)
      h = nn.max_pool(h, (2, 2), strides=(2, 2), padding="VALID")
      h = dropout(h, self.dropout, deterministic=not train)
    h = h.reshape(h.shape[0], -1)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=keras_dense_init)
    h = nn.leaky_relu(nn.Dense(self.hidden, name="fc", **kw)(h), self.negative_slope)
    h = dropout(h, self.dropout, deterministic=not train)
    return logit_head(self, h, kernel_init=keras_dense_init)


# --------------------------------------------------------------------------
# Radford et al. (2015) DCGAN
# --------------------------------------------------------------------------


def radford_num_stages(image_size: int, base_size: int | None = None) -> tuple[int, int]:
  """Return ``(base, n)``: base resolution and number of stride-2 stages.

  ``image_size == base * 2**n``. ``base`` defaults to
  :func:`jaxgan.models.layers.radford_base_size` (64 -> 4, 32 -> 4, 28 -> 7, 8 -> 2).
  """
  base = radford_base_size(image_size) if base_size is None else int(base_size)
  n, size = 0, image_size
  while size > base:
    if size % 2:
      break
    size //= 2
    n += 1
  if size != base or n < 1:
    raise ValueError(f"image_size {image_size} is not base_size {base} times a power of two (>= 2x)")
  return base, n


def radford_discriminator_trunk(
  module: nn.Module,
  x: jax.Array,
  *,
  train: bool,
  width: int,
  num_stages: int,
  negative_slope: float = 0.2,
  use_batchnorm: bool = True,
) -> jax.Array:
  """Convolutional trunk of the Radford DCGAN discriminator.

  Must be called inside a compact method of ``module`` (its ``dtype`` and
  ``param_dtype`` are used; layers are named ``conv{i}`` / ``bn{i}`` in it).
  Stage ``i`` (1-based) is a 4x4 stride-2 'SAME' convolution with
  ``width * 2**(i-1)`` channels, BatchNorm (all but the first stage; with
  ``use_batchnorm=False`` none, and every convolution gets a bias instead) and
  LeakyReLU(negative_slope). Returns the final feature map
  ``(B, base, base, width * 2**(num_stages-1))``.
  """
  h = jnp.asarray(x, module.dtype)
  for i in range(1, num_stages + 1):
    normalised = use_batchnorm and i > 1
    h = nn.Conv(
      width * 2 ** (i - 1),
      (4, 4),
      strides=(2, 2),
      padding="SAME",
      use_bias=not normalised,
      kernel_init=dcgan_init,
      dtype=module.dtype,
      param_dtype=module.param_dtype,
      name=f"conv{i}",
    )(h)
    if normalised:
      h = batch_norm(train, module.dtype, module.param_dtype, f"bn{i}", dcgan_bn_scale_init())(h)
    h = nn.leaky_relu(h, negative_slope)
  return h


def radford_discriminator_features(
  module: nn.Module, x: jax.Array, *, train: bool, use_batchnorm: bool = True
) -> jax.Array:
  """:func:`radford_discriminator_trunk` configured by the fields of a Radford discriminator ``module``.

  Checks that ``x`` is ``image_size`` x ``image_size`` and runs the trunk with
  ``module.width``, ``module.negative_slope`` and the number of stages of
  ``module.image_size`` / ``module.base_size`` (:func:`radford_num_stages`).
  """
  if x.shape[1] != module.image_size or x.shape[2] != module.image_size:
    raise ValueError(f"expected {module.image_size}x{module.image_size} images, got shape {x.shape}")
  _, n = radford_num_stages(module.image_size, module.base_size)
  return radford_discriminator_trunk(
    module,
    x,
    train=train,
    width=module.width,
    num_stages=n,
    negative_slope=module.negative_slope,
    use_batchnorm=use_batchnorm,
  )


class DCGANGenerator(TinyMixin, nn.Module):
  """DCGAN generator of Radford, Metz & Chintala (2015), "Unsupervised
  Representation Learning with Deep Convolutional Generative Adversarial
  Networks", ICLR 2016.

  Architecture (``image_size = base * 2**n``, e.g. 64 = 4 * 2**4)::

      z -> Dense(base*base*width*2**(n-1)) -> reshape -> BatchNorm -> ReLU   # the projection
      for k = 1 .. n-1:
          ConvTranspose(width*2**(n-1-k), 4x4, stride 2) -> BatchNorm -> ReLU
      ConvTranspose(channels, 4x4, stride 2) -> tanh

  For 64 px and ``width=64``: 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 ->
  64x64xC. For 28 px: 7x7x128 -> 14x14x64 -> 28x28xC; for 8 px:
  2x2x128 -> 4x4x64 -> 8x8xC. Following the paper's guidelines: no pooling,
  fractionally strided convolutions, BatchNorm in all layers but the output,
  ReLU everywhere but the tanh output, no fully connected layer other than
  the projection of z. Weights are N(0, 0.02); BatchNorm scales N(1, 0.02);
  layers followed by BatchNorm have no bias.

  Attributes:
    image_size: output height = width (8, 28, 32, 64, ...).
    channels: output channels (1 or 3).
    width: channels of the last hidden layer; doubled per stage towards z (64).
    base_size: optional override of the base resolution (default from
      :func:`jaxgan.models.layers.radford_base_size`).
  """

  image_size: int = 64
  channels: int = 3
  width: int = 64
  base_size: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"image_size": 8, "channels": 1, "width": 4}

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool = True):
    del labels
    base, n = radford_num_stages(self.image_size, self.base_size)
    ch0 = self.width * 2 ** (n - 1)
    kw = dict(kernel_init=dcgan_init, dtype=self.dtype, param_dtype=self.param_dtype)
    h = nn.Dense(base * base * ch0, use_bias=False, name="project", **kw)(flatten(z, self.dtype))
    h = h.reshape(h.shape[0], base, base, ch0)
    for k in range(1, n + 1):
      # BatchNorm -> ReLU on layer k - 1 (bn0: the projection), then transposed convolution k (a bias on the last only).
      h = nn.relu(batch_norm(train, self.dtype, self.param_dtype, f"bn{k - 1}", dcgan_bn_scale_init())(h))
      last = k == n
      features = self.channels if last else self.width * 2 ** (n - 1 - k)
      h = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME", use_bias=last, name=f"deconv{k}", **kw)(h)
    return jnp.tanh(h).astype(jnp.float32)


class DCGANDiscriminator(TinyMixin, nn.Module):
  """DCGAN discriminator of Radford, Metz & Chintala (2015), "Unsupervised
  Representation Learning with Deep Convolutional Generative Adversarial
  Networks", ICLR 2016.

  Architecture (``image_size = base * 2**n``)::

      for i = 1 .. n:
          Conv(width*2**(i-1), 4x4, stride 2) -> [BatchNorm if i > 1] -> LeakyReLU(0.2)
      flatten -> Dense(1)                     # the single logit

  For 64 px and ``width=64``: 64x64xC -> 32x32x64 -> 16x16x128 -> 8x8x256 ->
  4x4x512 -> logit. Strided convolutions instead of pooling, BatchNorm on all
  but the first layer, LeakyReLU everywhere, no fully connected layer other
  than the final logit (equivalent to a base x base 'VALID' convolution).
  Weights N(0, 0.02), BatchNorm scales N(1, 0.02). Returns raw logits (B,).

  Attributes:
    image_size: input height = width (8, 28, 32, 64, ...).
    width: channels of the first convolution; doubled per stage (64).
    base_size: optional override of the base resolution.
    negative_slope: LeakyReLU slope (0.2).
    use_batchnorm: False gives the WGAN-GP critic of Gulrajani et al. (2017),
      Sec. 4: the gradient penalty is defined per sample, so the critic must
      not mix samples through batch statistics (same shapes and FLOPs minus
      the normalisation; every convolution then has a bias).
  """

  image_size: int = 64
  width: int = 64
  base_size: int | None = None
  negative_slope: float = 0.2
  use_batchnorm: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"image_size": 8, "width": 4}

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    del labels
    h = radford_discriminator_features(self, x, train=train, use_batchnorm=self.use_batchnorm)
    return logit_head(self, h.reshape(h.shape[0], -1), kernel_init=dcgan_init)


GENERATORS = {
  "dcgan_mnist": MnistDCGANGenerator,
  "dcgan": DCGANGenerator,
}

DISCRIMINATORS = {
  "dcgan_mnist": MnistDCGANDiscriminator,
  "dcgan": DCGANDiscriminator,
}
