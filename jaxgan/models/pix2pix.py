"""Pix2Pix networks (Isola, Zhu, Zhou & Efros, 2017, "Image-to-Image Translation
with Conditional Adversarial Networks", CVPR): the U-Net generator and the
PatchGAN discriminator.

What lives here:

* :class:`UNetGenerator` -- the encoder-decoder with skip connections of the
  paper's appendix 6.1.1: encoder C64-C128-C256-C512-C512-C512-C512-C512
  (4x4 convolutions, stride 2, BatchNorm except on the first block,
  LeakyReLU 0.2), decoder CD512-CD512-CD512-C512-C256-C128-C64 (4x4
  transposed convolutions, stride 2, BatchNorm, 50% dropout on the first three
  blocks, ReLU) whose block ``i`` input is concatenated with the mirror encoder
  activation, then a 4x4 stride-2 transposed convolution to the output channels
  and tanh. The number of down-samplings is ``log2(size)`` of the input (8 at
  256 px, 5 at 32 px), so the bottleneck is always 1x1.
* :class:`PatchGANDiscriminator` -- the convolutional "PatchGAN" that classifies
  every N x N patch as real or fake (appendix 6.1.2): 70x70 is C64-C128-C256-C512
  (30x30 logits for a 256x256 input); 1x1 ("PixelGAN"), 16x16 and 286x286
  variants. It judges the pair (input, target): its input ``x`` is their
  channel concatenation.
* :func:`receptive_field` -- the receptive field of a stack of convolutions,
  computed from a (kernel, stride) list; :func:`norm_layer` -- the batch /
  instance / no normalisation switch shared with :mod:`jaxgan.models.cyclegan`.

All weights are drawn from N(0, 0.02) and BatchNorm scales from N(1, 0.02), as
in the paper ("weights initialized from a Gaussian distribution with mean 0 and
standard deviation 0.02"). Modules follow the jaxgan convention
``(x, labels=None, *, train=True)`` (``labels`` is ignored) and have ``dtype``
and ``param_dtype`` attributes; ``Cls.tiny()`` gives a small test variant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from jaxgan.models.layers import TinyMixin, batch_norm, dcgan_bn_scale_init, dcgan_init, dropout

__all__ = [
  "NORMS",
  "PATCH_SIZES",
  "PatchGANDiscriminator",
  "UNetGenerator",
  "norm_layer",
  "patchgan_layer_spec",
  "receptive_field",
  "GENERATORS",
  "DISCRIMINATORS",
]

NORMS = ("batch", "instance", "none")


def norm_layer(kind: str, *, train: bool, dtype: Any, param_dtype: Any, name: str, affine: bool = True):
  """A normalisation layer: ``"batch"``, ``"instance"`` or ``"none"`` (identity).

  BatchNorm uses batch statistics in training and running averages (momentum
  0.9, i.e. PyTorch's 0.1) otherwise, scale init N(1, 0.02). InstanceNorm
  (Ulyanov et al., 2016) normalises every image and channel over its own
  spatial positions, in training and evaluation alike; ``affine=False`` drops
  its learned scale and bias (the CycleGAN reference setting).
  """
  if kind == "batch":
    return batch_norm(train, dtype, param_dtype, name, dcgan_bn_scale_init())
  if kind == "instance":
    return nn.InstanceNorm(
      epsilon=1e-5, use_scale=affine, use_bias=affine, dtype=dtype, param_dtype=param_dtype, name=name
    )
  if kind == "none":
    return lambda h: h
  raise ValueError(f"unknown norm {kind!r}: choose one of {', '.join(NORMS)}")


def receptive_field(spec: Sequence[tuple[int, int]]) -> int:
  """Receptive field (in input pixels) of one output unit of a conv stack.

  ``spec`` lists (kernel, stride) from the input layer to the output layer.
  Walking back from one output unit, a layer with kernel k and stride s maps a
  window of r units to ``(r - 1) * s + k`` units of its input. For the 70x70
  PatchGAN, (4,2),(4,2),(4,2),(4,1),(4,1): 1 -> 4 -> 7 -> 16 -> 34 -> 70.
  """
  r = 1
  for kernel, stride in reversed(list(spec)):
    r = (r - 1) * stride + kernel
  return r


#: Patch size -> number of stride-2 4x4 blocks (n_layers of the reference code).
#: 16: C64-C128, 70: C64-C128-C256-C512, 286: C64-C128-C256-C512-C512-C512.
#: 1 is the 1x1 "PixelGAN" (C64-C128 with 1x1 kernels).
PATCH_SIZES = {1: 0, 16: 1, 70: 3, 286: 5}


def patchgan_layer_spec(patch_size: int) -> list[tuple[int, int]]:
  """(kernel, stride) of every convolution of a PatchGAN, output layer included.

  An N x N PatchGAN with ``n`` = ``PATCH_SIZES[N]`` has ``n`` stride-2 4x4
  blocks, one stride-1 4x4 block and a stride-1 4x4 convolution to one logit
  per position; the PixelGAN uses three 1x1 convolutions.
  """
  if patch_size not in PATCH_SIZES:
    raise ValueError(f"patch_size must be one of {sorted(PATCH_SIZES)}, got {patch_size}")
  if patch_size == 1:
    return [(1, 1)] * 3
  return [(4, 2)] * PATCH_SIZES[patch_size] + [(4, 1), (4, 1)]


def _patch_padding(kernel: int):
  """Padding 1 on every side for the 4x4 convolutions, none for 1x1 ones."""
  return ((1, 1), (1, 1)) if kernel == 4 else "VALID"


class UNetGenerator(TinyMixin, nn.Module):
  """U-Net generator of Pix2Pix (Isola et al., 2017, appendix 6.1.1).

  With ``n`` = ``num_downs`` (default ``log2`` of the input's smaller side)
  and ``f_i = min(base_features * 2**i, max_features)``::

      e_1 = LReLU(Conv_{f_0}(x))                            # no norm on the first block
      e_i = LReLU(Norm(Conv_{f_{i-1}}(e_{i-1})))            # i = 2 .. n; e_n is 1x1
      d_1 = ReLU(Dropout(Norm(ConvT_{f_{n-2}}(e_n))))
      d_j = ReLU([Dropout](Norm(ConvT_{f_{n-1-j}}([d_{j-1}, e_{n-j+1}]))))   # j = 2 .. n-1
      y   = tanh(ConvT_{channels}([d_{n-1}, e_1]))

  where Conv / ConvT are 4x4, stride 2 (padding 1) convolutions / transposed
  convolutions, LReLU has slope 0.2 and [.,.] is channel concatenation (the
  skip connections; ``skip_connections=False`` gives the paper's plain
  "encoder-decoder" ablation). Dropout (rate 0.5) is applied on the first
  ``dropout_blocks`` decoder blocks in training mode: it is the generator's
  only noise source, the paper's substitute for z. At 256 px and
  ``base_features=64`` this is exactly C64-...-C512 / CD512-CD512-CD512-C512-
  C256-C128-C64 (decoder inputs 512, 1024, 1024, 1024, 1024, 512, 256, 128
  channels). Norm is BatchNorm by default ("instance" and "none" are also
  accepted).

  The paper's table puts BatchNorm on the 1x1 innermost block too. In training
  mode with batch size 1, BatchNorm over a 1x1 map outputs its bias only, so
  the authors' released code leaves that block un-normalised: set
  ``innermost_norm=False`` for batch-size-1 training.

  Attributes:
    channels: output channels (3 for RGB targets, 1 for gray ones).
    base_features: f_0 (64).
    max_features: cap of the channel count (512).
    num_downs: down-samplings; None = log2(min(H, W)) of the input.
    dropout_rate: decoder dropout rate (0.5).
    dropout_blocks: how many of the first decoder blocks use dropout (3).
    norm: "batch", "instance" or "none".
    innermost_norm: normalise the 1x1 bottleneck block.
    skip_connections: U-Net (True) or plain encoder-decoder (False).
    negative_slope: encoder LeakyReLU slope (0.2).
  """

  channels: int = 3
  base_features: int = 64
  max_features: int = 512
  num_downs: int | None = None
  dropout_rate: float = 0.5
  dropout_blocks: int = 3
  norm: str = "batch"
  innermost_norm: bool = True
  skip_connections: bool = True
  negative_slope: float = 0.2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"base_features": 4, "max_features": 8}

  def depth(self, height: int, width: int) -> int:
    """Number of stride-2 down-samplings used for an H x W input."""
    n = self.num_downs if self.num_downs is not None else int(math.log2(min(height, width)))
    if n < 2 or height % 2**n or width % 2**n:
      raise ValueError(
        f"a {height}x{width} input cannot be halved {n} times by the U-Net: "
        "use sides divisible by 2**num_downs (e.g. 32, 64, 256) and num_downs >= 2"
      )
    return n

  def features(self, i: int) -> int:
    """Channels of encoder block i (0-based): min(base * 2**i, max)."""
    return min(self.base_features * 2**i, self.max_features)

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    del labels
    n = self.depth(x.shape[1], x.shape[2])
    kw = dict(
      kernel_size=(4, 4), strides=(2, 2), kernel_init=dcgan_init, dtype=self.dtype, param_dtype=self.param_dtype
    )
    norm_kw = dict(train=train, dtype=self.dtype, param_dtype=self.param_dtype)
    h = jnp.asarray(x, self.dtype)
    skips = []
    for i in range(n):
      norm = "none" if i == 0 or (i == n - 1 and not self.innermost_norm) else self.norm
      h = nn.Conv(self.features(i), padding=((1, 1), (1, 1)), use_bias=norm != "batch", name=f"down{i + 1}", **kw)(h)
      h = norm_layer(norm, name=f"down{i + 1}_norm", **norm_kw)(h)
      h = nn.leaky_relu(h, self.negative_slope)
      skips.append(h)
    # Transposed 4x4 stride-2 convolution with PyTorch padding 1: lax padding k - 1 - p = 2.
    up_pad = ((2, 2), (2, 2))
    for j in range(1, n):
      if j > 1 and self.skip_connections:
        h = jnp.concatenate([h, skips[n - j]], axis=-1)
      h = nn.ConvTranspose(
        self.features(n - 1 - j), padding=up_pad, use_bias=self.norm != "batch", name=f"up{j}", **kw
      )(h)
      h = norm_layer(self.norm, name=f"up{j}_norm", **norm_kw)(h)
      if j <= self.dropout_blocks:
        h = dropout(h, self.dropout_rate, deterministic=not train)
      h = nn.relu(h)
    if self.skip_connections:
      h = jnp.concatenate([h, skips[0]], axis=-1)
    h = nn.ConvTranspose(self.channels, padding=up_pad, name="out", **kw)(h)
    return jnp.tanh(h).astype(jnp.float32)


class PatchGANDiscriminator(TinyMixin, nn.Module):
  """PatchGAN discriminator (Isola et al., 2017, Sec. 3.2.2 and appendix 6.1.2).

  Classifies each N x N patch of its input as real or fake; the adversarial
  loss averages over all patches. For N = 70 (C64-C128-C256-C512)::

      LReLU(Conv4x4/2_{64}) -> LReLU(Norm(Conv4x4/2_{128})) -> LReLU(Norm(Conv4x4/2_{256}))
      -> LReLU(Norm(Conv4x4/1_{512})) -> Conv4x4/1_{1}

  all convolutions padded by 1, so 256 -> 128 -> 64 -> 32 -> 31 -> 30: a
  30x30 map of logits, each seeing a 70x70 patch (see :func:`receptive_field`).
  N = 16 is C64-C128 and N = 286 is C64-C128-C256-C512-C512-C512 (channels
  capped at ``max_features``); N = 1 ("PixelGAN") is 1x1 convolutions
  C64-C128 then one logit per pixel. No norm on the first block, LeakyReLU
  0.2, N(0, 0.02) weights. The paper's final sigmoid lives in the loss: the
  module returns raw logits of shape (B, H', W').

  Pix2Pix conditions D on the input image: ``x`` is the channel
  concatenation ``[input, target]`` (or ``[input, G(input)]``), e.g. 6
  channels for RGB -> RGB. CycleGAN's discriminators see one image (see
  :class:`jaxgan.models.cyclegan.CycleGANDiscriminator`).

  Attributes:
    patch_size: receptive field N: 1, 16, 70 or 286.
    base_features: channels of the first block (64).
    max_features: channel cap (512).
    norm: "batch" (Pix2Pix), "instance" (CycleGAN) or "none".
    norm_affine: learned scale and bias in instance norm (BatchNorm always has them).
    negative_slope: LeakyReLU slope (0.2).
  """

  patch_size: int = 70
  base_features: int = 64
  max_features: int = 512
  norm: str = "batch"
  norm_affine: bool = True
  negative_slope: float = 0.2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"base_features": 4, "max_features": 16}

  def layer_spec(self) -> list[tuple[int, int]]:
    """(kernel, stride) of every convolution, input to output."""
    return patchgan_layer_spec(self.patch_size)

  @property
  def receptive_field(self) -> int:
    """Input pixels seen by one output logit (equals ``patch_size``)."""
    return receptive_field(self.layer_spec())

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    del labels
    spec = self.layer_spec()
    norm_kw = dict(train=train, dtype=self.dtype, param_dtype=self.param_dtype)
    conv_kw = dict(kernel_init=dcgan_init, dtype=self.dtype, param_dtype=self.param_dtype)
    h = jnp.asarray(x, self.dtype)
    for i, (k, s) in enumerate(spec[:-1]):
      features = min(self.base_features * 2**i, self.max_features)
      norm = "none" if i == 0 else self.norm
      h = nn.Conv(
        features,
        (k, k),
        strides=(s, s),
        padding=_patch_padding(k),
        use_bias=norm != "batch",
        name=f"conv{i + 1}",
        **conv_kw,
      )(h)
      h = norm_layer(norm, name=f"norm{i + 1}", affine=self.norm_affine, **norm_kw)(h)
      h = nn.leaky_relu(h, self.negative_slope)
    k, s = spec[-1]
    h = nn.Conv(1, (k, k), strides=(s, s), padding=_patch_padding(k), name="out", **conv_kw)(h)
    return h[..., 0].astype(jnp.float32)


GENERATORS = {"unet": UNetGenerator}
DISCRIMINATORS = {"patchgan": PatchGANDiscriminator}
