"""Conditional GAN networks (Mirza & Osindero, 2014) and the projection discriminator.

What lives here:

* :class:`CGANMLPGenerator` -- MLP generator on ``concat(z, one_hot(y))``,
  110 -> 256 -> 512 -> 1200 -> 784 with LeakyReLU(0.2) + dropout 0.5 and a tanh
  output (the seed's first PyTorch generator, 003_*.txt).
* :class:`CGANEmbedGenerator` -- the seed's alternative generator: z -> 256 and
  y -> 256 separately (BatchNorm + ReLU), concatenated, then 512 -> 1024 ->
  784 with BatchNorm, ReLU and dropout 0.2, tanh output.
* :class:`CGANPaperGenerator` -- the generator as described in the cGAN paper:
  z -> 200 and y -> 1000 ReLU layers, joined 1200-unit ReLU layer, tanh output.
* :class:`CGANMLPDiscriminator` -- MLP discriminator on
  ``concat(flatten(x), one_hot(y))``, 794 -> 1024 -> 512 -> 256 -> 1.
* :class:`CGANMaxoutDiscriminator` -- the paper's maxout discriminator: maxout
  on x and on y separately, a joint maxout layer, dropout.
* :class:`ConvCGANGenerator` / :class:`ConvCGANDiscriminator` -- Radford DCGAN
  networks conditioned by concatenating the one-hot label to z (G) and
  one-hot label maps as extra input channels (D).
* :class:`ProjectionDiscriminator` -- the projection discriminator of Miyato &
  Koyama (2018) on a Radford DCGAN trunk.

All models are conditional: ``labels`` is an int array (B,) of class ids,
one-hot encoded internally with ``num_classes``. Generators map
``(z, labels, *, train)`` to NHWC images in [-1, 1]; discriminators map
``(x, labels, *, train)`` to raw logits of shape (B,).

``GENERATORS`` and ``DISCRIMINATORS`` map registry names to the module classes;
every class has a ``tiny(**overrides)`` constructor for fast tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from jaxgan.models import layers
from jaxgan.models.dcgan import DCGANDiscriminator, DCGANGenerator, radford_discriminator_features

__all__ = [
  "CGANMLPGenerator",
  "CGANEmbedGenerator",
  "CGANPaperGenerator",
  "CGANMLPDiscriminator",
  "CGANMaxoutDiscriminator",
  "ConvCGANGenerator",
  "ConvCGANDiscriminator",
  "ProjectionDiscriminator",
  "GENERATORS",
  "DISCRIMINATORS",
]


def _leaky_relu_stack(module: nn.Module, x, labels, train: bool):
  """``[Dense(h) -> LeakyReLU -> Dropout] for h in module.hidden`` on ``concat(flatten(x), one_hot(labels))``.

  The body shared by :class:`CGANMLPGenerator` and :class:`CGANMLPDiscriminator`
  (layers ``fc1``, ``fc2``, ... of ``module``).
  """
  y = layers.one_hot_labels(labels, module.num_classes, module.dtype)
  return layers.dense_stack(
    module,
    jnp.concatenate([layers.flatten(x, module.dtype), y], axis=-1),
    module.hidden,
    name="fc",
    start=1,
    activation=lambda h: nn.leaky_relu(h, module.negative_slope),
    dropout_rate=module.dropout,
    train=train,
  )


# --------------------------------------------------------------------------
# MLP generators
# --------------------------------------------------------------------------


class CGANMLPGenerator(layers.TinyMixin, nn.Module):
  """Conditional MLP generator, Mirza & Osindero (2014), "Conditional
  Generative Adversarial Nets", arXiv:1411.1784 -- the seed's first variant.

  Architecture (MNIST sizes: 100 + 10 = 110 inputs, 784 outputs)::

      concat(z, one_hot(y))                         # 110
      [Dense(h) -> LeakyReLU(0.2) -> Dropout(0.5)] for h in (256, 512, 1200)
      Dense(prod(image_shape)) -> tanh -> reshape(image_shape)

  No dropout after the output layer (the seed notes that dropout there
  breaks training).

  Attributes:
    num_classes: number of classes (10).
    image_shape: output shape per sample ((28, 28, 1); (8, 8, 1); (32, 32, 3)).
    hidden: hidden widths ((256, 512, 1200)).
    dropout: dropout rate after every hidden layer (0.5).
    negative_slope: LeakyReLU slope (0.2).
  """

  num_classes: int = 10
  image_shape: Sequence[int] = (28, 28, 1)
  hidden: Sequence[int] = (256, 512, 1200)
  dropout: float = 0.5
  negative_slope: float = 0.2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = True
  _tiny_config: ClassVar[dict] = {"num_classes": 3, "image_shape": (8, 8, 1), "hidden": (16, 16, 16)}

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool = True):
    return layers.image_head(self, _leaky_relu_stack(self, z, labels, train), self.image_shape)


class CGANEmbedGenerator(layers.TinyMixin, nn.Module):
  """Conditional MLP generator with separate z and y embeddings, Mirza &
  Osindero (2014), "Conditional Generative Adversarial Nets" -- the seed's
  alternative variant.

  Architecture (MNIST sizes)::

      a = ReLU(BatchNorm(Dense(256)(z)))            # z -> 256
      b = ReLU(BatchNorm(Dense(256)(one_hot(y))))   # y -> 256
      h = concat(a, b)                              # 512
      [Dense(h) -> BatchNorm -> ReLU -> Dropout(0.2)] for h in (512, 1024)
      Dense(prod(image_shape)) -> tanh -> reshape(image_shape)

  Attributes:
    num_classes: number of classes (10).
    image_shape: output shape per sample ((28, 28, 1)).
    z_embed: width of the z embedding (256).
    y_embed: width of the label embedding (256).
    hidden: widths after the concatenation ((512, 1024)).
    dropout: dropout rate after each of those layers (0.2).
  """

  num_classes: int = 10
  image_shape: Sequence[int] = (28, 28, 1)
  z_embed: int = 256
  y_embed: int = 256
  hidden: Sequence[int] = (512, 1024)
  dropout: float = 0.2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = True
  _tiny_config: ClassVar[dict] = {
    "num_classes": 3,
    "image_shape": (8, 8, 1),
    "z_embed": 8,
    "y_embed": 8,
    "hidden": (16, 16),
  }

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool = True):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    y = layers.one_hot_labels(labels, self.num_classes, self.dtype)
    a = nn.Dense(self.z_embed, name="fc_z", **kw)(layers.flatten(z, self.dtype))
    a = nn.relu(layers.batch_norm(train, self.dtype, self.param_dtype, "bn_z")(a))
    b = nn.Dense(self.y_embed, name="fc_y", **kw)(y)
    b = nn.relu(layers.batch_norm(train, self.dtype, self.param_dtype, "bn_y")(b))
    h = jnp.concatenate([a, b], axis=-1)
    for i, width in enumerate(self.hidden):
      h = nn.Dense(width, name=f"fc{i + 2}", **kw)(h)
      h = nn.relu(layers.batch_norm(train, self.dtype, self.param_dtype, f"bn{i + 2}")(h))
      if self.dropout > 0:
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
    return layers.image_head(self, h, self.image_shape)


class CGANPaperGenerator(layers.TinyMixin, nn.Module):
  """Conditional MLP generator as specified in Mirza & Osindero (2014),
  "Conditional Generative Adversarial Nets", section 4.1 (MNIST).

  Architecture::

      a = ReLU(Dense(200)(z))                # noise -> 200
      b = ReLU(Dense(1000)(one_hot(y)))      # label -> 1000
      h = ReLU(Dense(1200)(concat(a, b)))    # joint 1200-unit layer
      h = Dropout(0.5)(h)
      Dense(prod(image_shape)) -> tanh -> reshape(image_shape)

  The paper's sigmoid output is replaced by tanh for data in [-1, 1]; the
  paper applies dropout 0.5 in the generator.

  Attributes:
    num_classes, image_shape: as for the other generators.
    z_units: width of the z layer (200).
    y_units: width of the label layer (1000).
    joint_units: width of the joint layer (1200).
    dropout: dropout rate on the joint layer (0.5).
  """

  num_classes: int = 10
  image_shape: Sequence[int] = (28, 28, 1)
  z_units: int = 200
  y_units: int = 1000
  joint_units: int = 1200
  dropout: float = 0.5
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = True
  _tiny_config: ClassVar[dict] = {
    "num_classes": 3,
    "image_shape": (8, 8, 1),
    "z_units": 8,
    "y_units": 8,
    "joint_units": 16,
  }

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool = True):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    y = layers.one_hot_labels(labels, self.num_classes, self.dtype)
    a = nn.relu(nn.Dense(self.z_units, name="fc_z", **kw)(layers.flatten(z, self.dtype)))
    b = nn.relu(nn.Dense(self.y_units, name="fc_y", **kw)(y))
    h = nn.relu(nn.Dense(self.joint_units, name="fc_joint", **kw)(jnp.concatenate([a, b], axis=-1)))
    if self.dropout > 0:
      h = nn.Dropout(self.dropout)(h, deterministic=not train)
    return layers.image_head(self, h, self.image_shape)


# --------------------------------------------------------------------------
# MLP discriminators
# --------------------------------------------------------------------------


class CGANMLPDiscriminator(layers.TinyMixin, nn.Module):
  """Conditional MLP discriminator, Mirza & Osindero (2014), "Conditional
  Generative Adversarial Nets" -- the seed's PyTorch discriminator.

  Architecture (MNIST sizes: 784 + 10 = 794 inputs)::

      concat(flatten(x), one_hot(y))                 # 794
      [Dense(h) -> LeakyReLU(0.2) -> Dropout(0.5)] for h in (1024, 512, 256)
      Dense(1)                                       # raw logit

  The seed's listing builds these layers with the same helper as its
  generator (whose hidden layers end in dropout 0.5); the paper also applies
  dropout 0.5 to the discriminator. Set ``dropout=0`` to disable it.

  Attributes:
    num_classes: number of classes (10).
    hidden: hidden widths ((1024, 512, 256)).
    dropout: dropout rate after each hidden layer (0.5).
    negative_slope: LeakyReLU slope (0.2).
  """

  num_classes: int = 10
  hidden: Sequence[int] = (1024, 512, 256)
  dropout: float = 0.5
  negative_slope: float = 0.2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = True
  _tiny_config: ClassVar[dict] = {"num_classes": 3, "hidden": (16, 16, 16)}

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    return layers.logit_head(self, _leaky_relu_stack(self, x, labels, train))


class CGANMaxoutDiscriminator(layers.TinyMixin, nn.Module):
  """Conditional maxout discriminator, Mirza & Osindero (2014), "Conditional
  Generative Adversarial Nets", section 4.1, built from
  :class:`jaxgan.models.layers.Maxout` (Goodfellow et al., 2013).

  Architecture (the paper's MNIST sizes)::

      hx = Dropout(Maxout(240 units, 5 pieces)(Dropout_in(flatten(x))))
      hy = Dropout(Maxout(50 units, 5 pieces)(one_hot(y)))
      h  = Dropout(Maxout(240 units, 4 pieces)(concat(hx, hy)))
      Dense(1)                                        # raw logit (paper: sigmoid)

  with dropout rate 0.5 ("Dropout with probability of 0.5 was applied to
  both the generator and discriminator").

  Attributes:
    num_classes: number of classes (10).
    x_units, x_pieces: maxout layer on x (240, 5).
    y_units, y_pieces: maxout layer on y (50, 5).
    joint_units, joint_pieces: joint maxout layer (240, 4).
    dropout: dropout rate after every maxout layer (0.5).
    input_dropout: dropout rate on the flattened image (0).
  """

  num_classes: int = 10
  x_units: int = 240
  x_pieces: int = 5
  y_units: int = 50
  y_pieces: int = 5
  joint_units: int = 240
  joint_pieces: int = 4
  dropout: float = 0.5
  input_dropout: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = True
  _tiny_config: ClassVar[dict] = {
    "num_classes": 3,
    "x_units": 8,
    "x_pieces": 2,
    "y_units": 8,
    "y_pieces": 2,
    "joint_units": 8,
    "joint_pieces": 2,
  }

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

    def drop(h, rate):
      return layers.dropout(h, rate, deterministic=not train)

    y = layers.one_hot_labels(labels, self.num_classes, self.dtype)
    hx = drop(layers.flatten(x, self.dtype), self.input_dropout)
    hx = drop(layers.Maxout(self.x_units, self.x_pieces, name="maxout_x", **kw)(hx), self.dropout)
    hy = drop(layers.Maxout(self.y_units, self.y_pieces, name="maxout_y", **kw)(y), self.dropout)
    h = jnp.concatenate([hx, hy], axis=-1)
    h = drop(layers.Maxout(self.joint_units, self.joint_pieces, name="maxout_joint", **kw)(h), self.dropout)
    return layers.logit_head(self, h)


# --------------------------------------------------------------------------
# Convolutional conditional networks
# --------------------------------------------------------------------------


class ConvCGANGenerator(layers.TinyMixin, nn.Module):
  """Convolutional conditional generator: the Radford et al. (2015) DCGAN
  generator (:class:`jaxgan.models.dcgan.DCGANGenerator`) fed
  ``concat(z, one_hot(y))``, the conditioning of Mirza & Osindero (2014).

  Architecture: ``DCGANGenerator(image_size, channels, width, base_size)(concat(z, one_hot(y)))``
  (submodule ``"dcgan"``).

  Attributes:
    num_classes: number of classes (10).
    image_size, channels, width, base_size: as for ``DCGANGenerator``.
  """

  num_classes: int = 10
  image_size: int = 28
  channels: int = 1
  width: int = 64
  base_size: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = True
  _tiny_config: ClassVar[dict] = {"num_classes": 3, "image_size": 8, "channels": 1, "width": 4}

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool = True):
    y = layers.one_hot_labels(labels, self.num_classes, self.dtype)
    h = jnp.concatenate([layers.flatten(z, self.dtype), y], axis=-1)
    fields = layers.fields_of(self, "image_size", "channels", "width", "base_size", "dtype", "param_dtype")
    return DCGANGenerator(**fields, name="dcgan")(h, train=train)


class ConvCGANDiscriminator(layers.TinyMixin, nn.Module):
  """Convolutional conditional discriminator: the Radford et al. (2015)
  DCGAN discriminator (:class:`jaxgan.models.dcgan.DCGANDiscriminator`) on
  the image concatenated with one-hot label maps as extra input channels
  (label ``y`` becomes ``num_classes`` constant planes, plane ``y`` all ones),
  following the conditioning of Mirza & Osindero (2014).

  Architecture: ``DCGANDiscriminator(image_size, width, base_size)(concat(x, maps(y)))``
  (submodule ``"dcgan"``); raw logits (B,).

  Attributes:
    num_classes: number of classes (10).
    image_size, width, base_size: as for ``DCGANDiscriminator``.
  """

  num_classes: int = 10
  image_size: int = 28
  width: int = 64
  base_size: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = True
  _tiny_config: ClassVar[dict] = {"num_classes": 3, "image_size": 8, "width": 4}

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    x = jnp.asarray(x, self.dtype)
    y = layers.one_hot_labels(labels, self.num_classes, self.dtype)
    maps = jnp.broadcast_to(y[:, None, None, :], x.shape[:3] + (self.num_classes,))
    h = jnp.concatenate([x, maps], axis=-1)
    fields = layers.fields_of(self, "image_size", "width", "base_size", "dtype", "param_dtype")
    return DCGANDiscriminator(**fields, name="dcgan")(h, train=train)


class ProjectionDiscriminator(layers.TinyMixin, nn.Module):
  """Projection discriminator of Miyato & Koyama (2018), "cGANs with
  Projection Discriminator", ICLR, on a Radford DCGAN trunk.

  With ``phi(x)`` the DCGAN discriminator trunk
  (:func:`jaxgan.models.dcgan.radford_discriminator_trunk`: strided 4x4
  convolutions, BatchNorm on all but the first, LeakyReLU 0.2) followed by
  global sum pooling (as in the paper), the logit is

  .. math::  f(x, y) = \\psi(\\phi(x)) + \\langle V e_y, \\phi(x) \\rangle,

  where ``psi`` is a linear layer (``"psi"``) and ``V e_y`` a learned class
  embedding (``"embed"``, ``num_classes x C``). Returns raw logits (B,).

  Attributes:
    num_classes: number of classes (10).
    image_size, width, base_size, negative_slope: as for ``DCGANDiscriminator``.
  """

  num_classes: int = 10
  image_size: int = 28
  width: int = 64
  base_size: int | None = None
  negative_slope: float = 0.2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = True
  _tiny_config: ClassVar[dict] = {"num_classes": 3, "image_size": 8, "width": 4}

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    labels = layers.require_labels(labels)
    h = radford_discriminator_features(self, x, train=train)
    phi = jnp.sum(h, axis=(1, 2))  # global sum pooling -> (B, C)
    psi = nn.Dense(1, kernel_init=layers.dcgan_init, dtype=self.dtype, param_dtype=self.param_dtype, name="psi")(phi)
    emb = nn.Embed(
      self.num_classes,
      phi.shape[-1],
      embedding_init=layers.dcgan_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="embed",
    )(labels)
    logit = psi[:, 0] + jnp.sum(emb * phi, axis=-1)
    return logit.astype(jnp.float32)


GENERATORS = {
  "cgan_mlp": CGANMLPGenerator,
  "cgan_embed": CGANEmbedGenerator,
  "cgan_paper": CGANPaperGenerator,
  "cgan_conv": ConvCGANGenerator,
}

DISCRIMINATORS = {
  "cgan_mlp": CGANMLPDiscriminator,
  "cgan_maxout": CGANMaxoutDiscriminator,
  "cgan_conv": ConvCGANDiscriminator,
  "cgan_projection": ProjectionDiscriminator,
}
