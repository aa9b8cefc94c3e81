"""Fully connected GAN networks.

What lives here:

* :class:`MLPGenerator` -- the multilayer-perceptron generator of the original
  GAN paper (Goodfellow et al., 2014), ReLU hidden layers and a tanh output
  reshaped to an image.
* :class:`MLPDiscriminator` -- an MLP discriminator with LeakyReLU hidden
  layers (and optional dropout).
* :class:`MaxoutDiscriminator` -- the maxout-and-dropout discriminator of the
  original GAN paper.
* :class:`ToyGenerator` / :class:`ToyCritic` -- plain ReLU MLPs with a linear
  output for low-dimensional toy data (e.g. 2-D Gaussian mixtures), used as
  generator and WGAN critic / GAN discriminator.

Generators map ``(z, labels=None, *, train)`` to images NHWC in [-1, 1] (or to
``(B, out_dim)`` for the toy generator); discriminators map
``(x, labels=None, *, train)`` to raw logits of shape ``(B,)``. All models here
are unconditional and ignore ``labels``.

``GENERATORS`` and ``DISCRIMINATORS`` map registry names to the module classes;
every class has a ``tiny(**overrides)`` constructor for fast tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from jaxgan.models.layers import Maxout, TinyMixin, dense_stack, flatten, image_head, logit_head

__all__ = [
  "MLPGenerator",
  "MLPDiscriminator",
  "MaxoutDiscriminator",
  "ToyGenerator",
  "ToyCritic",
  "GENERATORS",
  "DISCRIMINATORS",
]


class MLPGenerator(TinyMixin, nn.Module):
  """MLP generator of Goodfellow et al. (2014), "Generative Adversarial Nets", NeurIPS.

  Architecture: ``z -> [Dense(h) -> ReLU] for h in hidden -> Dense(prod(image_shape))
  -> tanh -> reshape(image_shape)``. The paper's MNIST generator has two
  rectifier hidden layers of 1200 units (its sigmoid output is replaced by
  tanh here, matching data scaled to [-1, 1]).

  Attributes:
    image_shape: output shape per sample, e.g. ``(28, 28, 1)`` or ``(8, 8, 1)``.
    hidden: widths of the ReLU hidden layers.
  """

  image_shape: Sequence[int] = (28, 28, 1)
  hidden: Sequence[int] = (1200, 1200)
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"image_shape": (8, 8, 1), "hidden": (16, 16)}

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool = True):
    del labels, train
    h = dense_stack(self, flatten(z, self.dtype), self.hidden, name="hidden")
    return image_head(self, h, self.image_shape)


class MLPDiscriminator(TinyMixin, nn.Module):
  """MLP discriminator with LeakyReLU hidden layers (Goodfellow et al., 2014, MLP GAN).

  Architecture: ``flatten(x) -> [Dense(h) -> LeakyReLU(negative_slope) ->
  Dropout(dropout)] for h in hidden -> Dense(1)``; returns the raw logit, shape (B,).

  Attributes:
    hidden: widths of the hidden layers.
    negative_slope: LeakyReLU slope (0.2).
    dropout: dropout rate after every hidden layer (0 disables it).
  """

  hidden: Sequence[int] = (512, 256)
  negative_slope: float = 0.2
  dropout: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"hidden": (16, 16), "dropout": 0.3}

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    del labels
    h = dense_stack(
      self,
      flatten(x, self.dtype),
      self.hidden,
      name="hidden",
      activation=lambda h: nn.leaky_relu(h, self.negative_slope),
      dropout_rate=self.dropout,
      train=train,
    )
    return logit_head(self, h)


class MaxoutDiscriminator(TinyMixin, nn.Module):
  """Maxout discriminator of Goodfellow et al. (2014), "Generative Adversarial Nets".

  The paper's discriminator "used maxout activations" and "dropout was
  applied in training the discriminator net". Its MNIST network has two
  maxout layers of 240 units with 5 pieces each, dropout with keep
  probability 0.8 on the input and 0.5 on the hidden layers, and a single
  sigmoid output unit. Architecture:

  ``flatten(x) -> Dropout(input_dropout) -> [Maxout(u, pieces) -> Dropout(dropout)]
  for u in units -> Dense(1)``; returns the raw logit, shape (B,).

  Attributes:
    units: number of maxout units per hidden layer.
    num_pieces: linear pieces per maxout unit.
    input_dropout: dropout rate on the input.
    dropout: dropout rate after each maxout layer.
  """

  units: Sequence[int] = (240, 240)
  num_pieces: int = 5
  input_dropout: float = 0.2
  dropout: float = 0.5
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"units": (8, 8), "num_pieces": 2}

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    del labels
    h = flatten(x, self.dtype)
    if self.input_dropout > 0:
      h = nn.Dropout(self.input_dropout)(h, deterministic=not train)
    for i, u in enumerate(self.units):
      h = Maxout(u, self.num_pieces, dtype=self.dtype, param_dtype=self.param_dtype, name=f"maxout{i}")(h)
      if self.dropout > 0:
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
    return logit_head(self, h)


class ToyGenerator(TinyMixin, nn.Module):
  """ReLU MLP generator for low-dimensional toy data (e.g. 2-D Gaussian mixtures).

  Architecture: ``z -> [Dense(w) -> ReLU for w in widths] -> Dense(out_dim)``
  (``widths`` defaults to ``[hidden] * depth``) with a linear output (toy data is not bounded to [-1, 1]); returns shape
  ``(B, out_dim)``. This is the fully connected generator used for the
  toy-distribution experiments of the GAN literature, e.g. the 512-unit,
  3-hidden-layer ReLU MLPs of Gulrajani et al. (2017), "Improved Training of
  Wasserstein GANs", for WGAN on 2-D mixtures (Arjovsky et al., 2017).

  Attributes:
    hidden: width of every hidden layer (512).
    depth: number of hidden layers (3).
    widths: the hidden widths one by one (overrides ``hidden`` and ``depth``).
    out_dim: data dimension (2).
  """

  hidden: int = 512
  depth: int = 3
  widths: tuple[int, ...] = ()
  out_dim: int = 2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"hidden": 16, "depth": 2}

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool = True):
    del labels, train
    h = dense_stack(self, flatten(z, self.dtype), self.widths or [self.hidden] * self.depth, name="hidden")
    out = nn.Dense(self.out_dim, dtype=self.dtype, param_dtype=self.param_dtype, name="out")(h)
    return out.astype(jnp.float32)


class ToyCritic(TinyMixin, nn.Module):
  """ReLU MLP critic / discriminator for low-dimensional toy data.

  Architecture: ``x -> [Dense(w) -> ReLU for w in widths] -> Dense(1)``
  (``widths`` defaults to ``[hidden] * depth``); returns
  the raw score of shape (B,) -- a WGAN critic value (Arjovsky, Chintala &
  Bottou, 2017, "Wasserstein GAN") or a GAN logit, depending on the loss.

  Attributes:
    hidden: width of every hidden layer (512).
    depth: number of hidden layers (3).
    widths: the hidden widths one by one (overrides ``hidden`` and ``depth``).
  """

  hidden: int = 512
  depth: int = 3
  widths: tuple[int, ...] = ()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  is_conditional: ClassVar[bool] = False
  _tiny_config: ClassVar[dict] = {"hidden": 16, "depth": 2}

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    del labels, train
    widths = self.widths or [self.hidden] * self.depth
    return logit_head(self, dense_stack(self, flatten(x, self.dtype), widths, name="hidden"))


GENERATORS = {
  "mlp": MLPGenerator,
  "toy_mlp": ToyGenerator,
}

DISCRIMINATORS = {
  "mlp": MLPDiscriminator,
  "mlp_maxout": MaxoutDiscriminator,
  "toy_mlp": ToyCritic,
}
