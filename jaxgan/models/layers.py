"""Shared building blocks for the jaxgan model zoo.

What lives here:

* :class:`Maxout` -- the maxout unit of Goodfellow et al. (2013), used by the
  discriminators of the original GAN paper and of the conditional GAN paper.
* :class:`TinyMixin` -- gives every model class a ``tiny(**overrides)``
  constructor returning its small test configuration.
* Initialisers used by several families: :data:`dcgan_init` (N(0, 0.02)),
  :data:`keras_dense_init` (Glorot uniform), :func:`dcgan_bn_scale_init`
  (N(1, 0.02)). Kernel initialisers sample flat and reshape, which compiles
  much faster on CPU than sampling 4-D kernel shapes directly.
* Small functional helpers shared by the model files: label checking and
  one-hot encoding with a clear error for missing labels, dropout on
  flattened features, nearest-neighbour up-sampling, shape bookkeeping, and
  the choice of the base resolution of the DCGAN-style pyramids.
* Layer helpers called inside a module's compact method, creating their
  layers in that module (so parameter names are the caller's):
  :func:`batch_norm` (momentum 0.9, epsilon 1e-5), :func:`dense_stack` (a
  stack of Dense -> activation -> dropout layers), :func:`image_head` (Dense
  -> tanh -> image reshape) and :func:`logit_head` (Dense(1) -> logits (B,));
  :func:`fields_of` forwards a module's own fields to a sub-module it wraps.

All modules follow the library conventions: a ``dtype`` (compute dtype) and a
``param_dtype`` attribute, passed to every parameterised layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
  "Maxout",
  "TinyMixin",
  "dcgan_init",
  "normal_init",
  "glorot_uniform_init",
  "dcgan_bn_scale_init",
  "keras_dense_init",
  "one_hot_labels",
  "require_labels",
  "dropout",
  "upsample_nearest",
  "num_elements",
  "radford_base_size",
  "flatten",
  "fields_of",
  "batch_norm",
  "dense_stack",
  "image_head",
  "logit_head",
]


def _flat_random(sample, key, shape, dtype):
  """Draw ``sample(key, (prod(shape),))`` and reshape it to ``shape``.

  Same distribution as sampling ``shape`` directly, but XLA compiles the
  1-D threefry sampler far faster on CPU than the N-D one (seconds per
  convolution-kernel shape otherwise), which matters for model init.
  """
  size = num_elements(shape)
  return sample(key, (size,)).reshape(shape).astype(dtype)


def normal_init(stddev: float = 0.02):
  """Initialiser drawing N(0, stddev^2) entries (sampled flat, then reshaped)."""

  def init(key, shape, dtype=jnp.float32):
    return _flat_random(lambda k, s: stddev * jax.random.normal(k, s, jnp.float32), key, shape, dtype)

  return init


def glorot_uniform_init():
  """Glorot/Xavier uniform initialiser (Keras' default kernel initialiser).

  Entries are U(-a, a) with ``a = sqrt(6 / (fan_in + fan_out))``, where for a
  kernel of shape ``(*receptive, in, out)`` ``fan_in = prod(receptive) * in``
  and ``fan_out = prod(receptive) * out`` -- identical to
  ``flax.linen.initializers.xavier_uniform()``, but sampled flat.
  """

  def init(key, shape, dtype=jnp.float32):
    receptive = num_elements(shape[:-2]) if len(shape) > 2 else 1
    fan_in = receptive * (shape[-2] if len(shape) > 1 else 1)
    fan_out = receptive * shape[-1]
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return _flat_random(lambda k, s: jax.random.uniform(k, s, jnp.float32, -limit, limit), key, shape, dtype)

  return init


#: N(0, 0.02) weight initialiser of Radford et al. (2015), "all weights were
#: initialized from a zero-centered Normal distribution with standard
#: deviation 0.02".
dcgan_init = normal_init(0.02)

#: Keras' default kernel initialiser (Glorot/Xavier uniform), used where a
#: model transcribes a Keras listing that does not override it.
keras_dense_init = glorot_uniform_init()


def dcgan_bn_scale_init(stddev: float = 0.02):
  """BatchNorm scale initialiser N(1, stddev), as in the reference DCGAN code.

  Returns an initialiser ``init(key, shape, dtype)`` drawing
  ``1 + stddev * N(0, 1)``.
  """

  def init(key, shape, dtype=jnp.float32):
    return (1.0 + stddev * jax.random.normal(key, shape, jnp.float32)).astype(dtype)

  return init


class TinyMixin:
  """Mixin adding ``tiny(**overrides)``: the module built with its small test config.

  Subclasses set the class variable ``_tiny_config`` (attribute name ->
  value); keyword ``overrides`` replace entries of it.
  """

  _tiny_config: ClassVar[dict] = {}

  @classmethod
  def tiny(cls, **overrides):
    return cls(**{**cls._tiny_config, **overrides})


def one_hot_labels(labels, num_classes: int, dtype: Any = jnp.float32) -> jax.Array:
  """One-hot encode integer class ids ``labels`` of shape (B,) to (B, num_classes).

  Raises a ``ValueError`` when ``labels`` is ``None`` -- conditional models
  cannot run without them.
  """
  return jax.nn.one_hot(require_labels(labels), num_classes, dtype=dtype)


def require_labels(labels) -> jax.Array:
  """Return ``labels`` as an array after checking it is a (B,) array of class ids.

  Raises a ``ValueError`` for ``None`` or a wrong rank.
  """
  if labels is None:
    raise ValueError("this model is conditional: pass integer class labels of shape (B,)")
  labels = jnp.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be integer class ids of shape (B,), got shape {labels.shape}")
  return labels


def dropout(x: jax.Array, rate: float, *, deterministic: bool) -> jax.Array:
  """``nn.Dropout(rate)`` applied to ``x`` viewed as ``(B, -1)``; identity if ``rate == 0``.

  Must be called inside a compact method (it creates an ``nn.Dropout`` in the
  calling module; the mask comes from the 'dropout' rng). The mask is i.i.d.
  per element exactly as for ``nn.Dropout`` on ``x`` itself; flattening only
  avoids the N-D Bernoulli sampler, which compiles very slowly on CPU for
  4-D feature maps.
  """
  if rate <= 0:
    return x
  flat = x.reshape(x.shape[0], -1)
  return nn.Dropout(rate)(flat, deterministic=deterministic).reshape(x.shape)


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour up-sampling of an NHWC tensor (Keras ``UpSampling2D``)."""
  x = jnp.repeat(x, factor, axis=1)
  return jnp.repeat(x, factor, axis=2)


def num_elements(shape: Sequence[int]) -> int:
  """Product of a shape tuple."""
  return int(math.prod(int(s) for s in shape))


def radford_base_size(image_size: int) -> int:
  """Base (smallest) spatial resolution of a DCGAN pyramid for ``image_size``.

  The image size is halved while it stays even and the half is at least the
  minimum base (4 px for images of 16 px and up, 2 px for smaller ones):
  64 -> 4, 32 -> 4, 28 -> 7 (7 -> 14 -> 28), 16 -> 4, 8 -> 2.
  """
  if image_size < 2:
    raise ValueError(f"image_size must be >= 2, got {image_size}")
  min_base = 4 if image_size >= 16 else 2
  size = image_size
  while size % 2 == 0 and size // 2 >= min_base:
    size //= 2
  return size


def flatten(x, dtype: Any) -> jax.Array:
  """``x`` cast to ``dtype`` and viewed as ``(B, -1)``."""
  x = jnp.asarray(x, dtype)
  return x.reshape(x.shape[0], -1)


def fields_of(module: nn.Module, *names: str) -> dict[str, Any]:
  """``{name: getattr(module, name)}`` for ``names``.

  For a module that wraps another one configured by the same fields, e.g.
  ``DCGANGenerator(**fields_of(self, "image_size", "width", "dtype"), name="dcgan")``.
  """
  return {name: getattr(module, name) for name in names}


def batch_norm(train: bool, dtype: Any, param_dtype: Any, name: str, scale_init: Any = nn.initializers.ones):
  """``nn.BatchNorm`` with momentum 0.9 (PyTorch's 0.1) and epsilon 1e-5.

  Batch statistics in training, running averages otherwise.
  """
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    scale_init=scale_init,
    dtype=dtype,
    param_dtype=param_dtype,
    name=name,
  )


def dense_stack(
  module: nn.Module,
  h: jax.Array,
  widths: Sequence[int],
  *,
  name: str,
  start: int = 0,
  activation: Callable[[jax.Array], jax.Array] = nn.relu,
  dropout_rate: float = 0.0,
  train: bool = True,
) -> jax.Array:
  """``[Dense(w) -> activation -> Dropout(dropout_rate)] for w in widths`` applied to ``h``.

  Must be called inside a compact method of ``module`` (its ``dtype`` and
  ``param_dtype`` are used); layer ``i`` is named ``f"{name}{start + i}"``.
  Dropout (``nn.Dropout`` on the 'dropout' rng, active when ``train``) is
  left out when ``dropout_rate`` is 0.
  """
  for i, width in enumerate(widths):
    h = nn.Dense(width, dtype=module.dtype, param_dtype=module.param_dtype, name=f"{name}{start + i}")(h)
    h = activation(h)
    if dropout_rate > 0:
      h = nn.Dropout(dropout_rate)(h, deterministic=not train)
  return h


def image_head(module: nn.Module, h: jax.Array, image_shape: Sequence[int]) -> jax.Array:
  """A generator's output layer: ``Dense(prod(image_shape))`` (``"out"``) -> tanh -> (B, *image_shape), float32.

  Must be called inside a compact method of ``module`` (its ``dtype`` and
  ``param_dtype`` are used).
  """
  h = nn.Dense(num_elements(image_shape), dtype=module.dtype, param_dtype=module.param_dtype, name="out")(h)
  return jnp.tanh(h).reshape((h.shape[0],) + tuple(image_shape)).astype(jnp.float32)


def logit_head(module: nn.Module, h: jax.Array, **dense_kwargs: Any) -> jax.Array:
  """A discriminator's output layer: ``Dense(1, **dense_kwargs)`` (``"out"``) -> raw logits (B,), float32.

  Must be called inside a compact method of ``module`` (its ``dtype`` and
  ``param_dtype`` are used).
  """
  logit = nn.Dense(1, dtype=module.dtype, param_dtype=module.param_dtype, name="out", **dense_kwargs)(h)
  return logit[:, 0].astype(jnp.float32)


class Maxout(nn.Module):
  r"""Maxout layer (Goodfellow, Warde-Farley, Mirza, Courville & Bengio, 2013,
  "Maxout Networks", ICML).

  For an input :math:`x \in \mathbb{R}^d` the layer computes ``features * k``
  affine maps and returns, for every output unit :math:`i`, the largest of
  its :math:`k` pieces:

  .. math::

      z_{ij} = x^\top W_{\cdot ij} + b_{ij}, \qquad
      h_i(x) = \max_{j \in \{1, \dots, k\}} z_{ij},

  with :math:`W \in \mathbb{R}^{d \times m \times k}` and
  :math:`b \in \mathbb{R}^{m \times k}` (:math:`m` = ``features``). A maxout
  unit is a learned piecewise-linear convex activation.

  Implementation: one ``Dense`` layer (param name ``"dense"``) with
  ``features * num_pieces`` outputs whose columns are grouped unit-major,
  i.e. the kernel reshaped to ``(d, features, num_pieces)`` gives
  :math:`W` and the bias reshaped to ``(features, num_pieces)`` gives
  :math:`b`; then a max over the last axis.

  Attributes:
    features: number of output units :math:`m`.
    num_pieces: number of linear pieces :math:`k` per unit.
    kernel_init / bias_init: initialisers of the underlying Dense layer.
  """

  features: int
  num_pieces: int
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.num_pieces < 1:
      raise ValueError(f"num_pieces must be >= 1, got {self.num_pieces}")
    z = nn.Dense(
      self.features * self.num_pieces,
      kernel_init=self.kernel_init,
      bias_init=self.bias_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="dense",
    )(x)
    z = z.reshape(z.shape[:-1] + (self.features, self.num_pieces))
    return jnp.max(z, axis=-1)
