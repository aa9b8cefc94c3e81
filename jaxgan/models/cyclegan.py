"""CycleGAN networks (Zhu, Park, Isola & Efros, 2017, "Unpaired Image-to-Image
Translation using Cycle-Consistent Adversarial Networks", ICCV).

What lives here:

* :class:`ResNetGenerator` -- the generator of the paper's appendix 7.2
  (after Johnson et al., 2016): c7s1-64, d128, d256, R256 x 6 (128 px) or x 9
  (256 px and up), u128, u64, c7s1-3, with instance normalisation, reflection
  padding and a tanh output.
* :class:`CycleGANDiscriminator` -- the 70x70 PatchGAN of Pix2Pix with instance
  normalisation (none on the first layer) and LeakyReLU 0.2, judging a single
  image (no conditioning input).
* :func:`reflect_pad` -- reflection padding of the spatial axes.

Weights are N(0, 0.02), as in the paper. Modules follow the jaxgan convention
``(x, labels=None, *, train=True)`` (``labels`` ignored), have ``dtype`` /
``param_dtype`` attributes and a ``tiny()`` test variant. With instance
normalisation the networks keep no running statistics, so ``train`` only
matters for the optional "batch" norm.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models.layers import TinyMixin, dcgan_init
from jaxgan.models.pix2pix import PatchGANDiscriminator, norm_layer

__all__ = ["CycleGANDiscriminator", "ResNetGenerator", "reflect_pad", "GENERATORS", "DISCRIMINATORS"]


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
  """Reflection padding of an NHWC tensor by ``pad`` pixels on each spatial side."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class ResNetGenerator(TinyMixin, nn.Module):
  """ResNet generator of CycleGAN (Zhu et al., 2017, appendix 7.2).

  With ``f = base_features`` (64)::

      c7s1-f    : ReflectPad 3 -> Conv7x7/1_{f}   -> IN -> ReLU
      d{2f}     : Conv3x3/2_{2f} (pad 1)          -> IN -> ReLU
      d{4f}     : Conv3x3/2_{4f} (pad 1)          -> IN -> ReLU
      R{4f} x B : h + IN(Conv3x3(Pad(ReLU(IN(Conv3x3(Pad(h)))))))   (reflection pads of 1)
      u{2f}     : ConvT3x3/2_{2f} (fractionally strided, output 2x) -> IN -> ReLU
      u{f}      : ConvT3x3/2_{f}                                      -> IN -> ReLU
      c7s1-C    : ReflectPad 3 -> Conv7x7/1_{C} -> tanh

  The paper uses B = 6 residual blocks for 128x128 images and B = 9 for
  256x256 and higher. IN is instance normalisation without a learned affine
  map (the reference code's default; ``norm_affine=True`` adds one). Input
  sides must be divisible by 4.

  Attributes:
    channels: output channels (3).
    base_features: f (64).
    num_blocks: residual blocks B (9; 6 for 128 px).
    norm: "instance" (paper), "batch" or "none".
    norm_affine: learned scale and bias in instance norm.
  """

  channels: int = 3
  base_features: int = 64
  num_blocks: int = 9
  norm: str = "instance"
  norm_affine: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"base_features": 4, "num_blocks": 2}

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    del labels
    if x.shape[1] % 4 or x.shape[2] % 4:
      raise ValueError(f"ResNetGenerator needs sides divisible by 4, got {x.shape[1]}x{x.shape[2]}")
    f = self.base_features
    conv_kw = dict(kernel_init=dcgan_init, dtype=self.dtype, param_dtype=self.param_dtype)

    def norm(name):
      return norm_layer(
        self.norm, train=train, dtype=self.dtype, param_dtype=self.param_dtype, name=name, affine=self.norm_affine
      )

    h = jnp.asarray(x, self.dtype)
    h = nn.Conv(f, (7, 7), padding="VALID", name="c7s1", **conv_kw)(reflect_pad(h, 3))
    h = nn.relu(norm("c7s1_norm")(h))
    for i, k in enumerate((2 * f, 4 * f)):
      h = nn.Conv(k, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name=f"d{i + 1}", **conv_kw)(h)
      h = nn.relu(norm(f"d{i + 1}_norm")(h))
    for b in range(self.num_blocks):
      r = nn.Conv(4 * f, (3, 3), padding="VALID", name=f"res{b + 1}_conv1", **conv_kw)(reflect_pad(h, 1))
      r = nn.relu(norm(f"res{b + 1}_norm1")(r))
      r = nn.Conv(4 * f, (3, 3), padding="VALID", name=f"res{b + 1}_conv2", **conv_kw)(reflect_pad(r, 1))
      h = h + norm(f"res{b + 1}_norm2")(r)
    # 3x3 stride-2 transposed convolution with PyTorch padding 1 and output_padding 1:
    # lax padding (k - 1 - p, k - 1 - p + 1) = (1, 2), output exactly 2x.
    for i, k in enumerate((2 * f, f)):
      h = nn.ConvTranspose(k, (3, 3), strides=(2, 2), padding=((1, 2), (1, 2)), name=f"u{i + 1}", **conv_kw)(h)
      h = nn.relu(norm(f"u{i + 1}_norm")(h))
    h = nn.Conv(self.channels, (7, 7), padding="VALID", name="out", **conv_kw)(reflect_pad(h, 3))
    return jnp.tanh(h).astype(jnp.float32)


class CycleGANDiscriminator(PatchGANDiscriminator):
  """CycleGAN's discriminator: the 70x70 PatchGAN (C64-C128-C256-C512) with
  instance normalisation, no norm on the first layer, LeakyReLU 0.2
  (Zhu et al., 2017, appendix 7.2). Its input is one image of its domain;
  the output is a (B, H', W') map of raw scores (30x30 at 256 px), read by
  the least-squares GAN loss.
  """

  norm: str = "instance"


GENERATORS = {"resnet": ResNetGenerator}
DISCRIMINATORS = {"patchgan": CycleGANDiscriminator}
