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
* Spectral normalisation (Miyato, Kataoka, Koyama & Yoshida, 2018), built on
  Flax's :class:`flax.linen.SpectralNorm`: :func:`spectral_norm` wraps one
  Dense / Conv / Embed layer inside a compact method, and
  :class:`SpectralNormalized` wraps a whole discriminator (every weight of
  rank >= 2). The power-iteration state lives in the 'batch_stats'
  collection and is updated in training mode only.

All modules follow the library conventions: a ``dtype`` (compute dtype) and a
``param_dtype`` attribute, passed to every parameterised layer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.state import ModuleCall

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
  "spectral_norm",
  "SpectralNormalized",
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


def glorot_uniform_init(gain: float = 1.0):
  """Glorot/Xavier uniform initialiser (Keras' default kernel initialiser).

  Entries are U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))``, where
  for a kernel of shape ``(*receptive, in, out)`` ``fan_in = prod(receptive) * in``
  and ``fan_out = prod(receptive) * out`` -- identical to
  ``flax.linen.initializers.xavier_uniform()`` for ``gain=1`` and to PyTorch's
  ``nn.init.xavier_uniform_(w, gain)``, but sampled flat.
  """

  def init(key, shape, dtype=jnp.float32):
    receptive = num_elements(shape[:-2]) if len(shape) > 2 else 1
    fan_in = receptive * (shape[-2] if len(shape) > 1 else 1)
    fan_out = receptive * shape[-1]
    limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
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


def batch_norm(
  train: bool,
  dtype: Any,
  param_dtype: Any,
  name: str,
  scale_init: Any = nn.initializers.ones,
  *,
  affine: bool = True,
):
  """``nn.BatchNorm`` with momentum 0.9 (PyTorch's 0.1) and epsilon 1e-5.

  Batch statistics in training, running averages otherwise. ``affine=False``
  leaves out the learned scale and bias (PyTorch's ``affine=False``), for a
  caller that supplies its own, e.g. a class-conditional BatchNorm.
  """
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    use_scale=affine,
    use_bias=affine,
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


# --------------------------------------------------------------------------
# Spectral normalisation
# --------------------------------------------------------------------------


class _SpectralNorm(nn.SpectralNorm):
  """:class:`flax.linen.SpectralNorm` restricted to the 'params' collection, keeping each weight's dtype.

  ``nn.SpectralNorm`` maps every collection of the wrapped module; a wrapped
  module's own non-parameter state (BatchNorm statistics, the ``u`` vectors of
  spectrally normalised layers inside it) must pass through untouched, and the
  normalised weight keeps its own dtype (not the promotion with the float32
  ``u``).
  """

  def _spectral_normalize(self, path, vs, update_stats):
    if getattr(path[0], "key", None) != "params":
      return vs
    value = super()._spectral_normalize(path, vs, update_stats)
    return jnp.asarray(value, jnp.asarray(vs).dtype)


def _check_n_steps(n_steps: int) -> None:
  # nn.SpectralNorm silently returns the raw weights for n_steps < 1.
  if n_steps < 1:
    raise ValueError(f"spectral normalisation needs n_steps >= 1 power iterations, got {n_steps}")


def spectral_norm(
  layer: nn.Module,
  *,
  train: bool,
  n_steps: int = 1,
  enabled: bool = True,
  name: str | None = None,
) -> Callable[..., Any]:
  r"""``layer`` with its weights divided by their spectral norm (Miyato et al., 2018).

  Miyato, Kataoka, Koyama & Yoshida (2018), "Spectral Normalization for
  Generative Adversarial Networks", ICLR. Every weight :math:`W` of rank >= 2
  (a Dense kernel ``(in, out)``, a Conv kernel ``(kh, kw, in, out)`` viewed as
  ``(kh*kw*in, out)`` -- the transpose of the paper's ``(out, in*kh*kw)``, so
  the same singular values -- or an Embed table ``(num, features)``) is
  replaced by

  .. math::  \bar W = W / \sigma(W), \qquad \sigma(W) = \max_{h \ne 0} \|W h\|_2 / \|h\|_2,

  its largest singular value, estimated by power iteration on a persistent
  vector :math:`u` (row-vector form, ``n_steps`` times per call):
  :math:`v \leftarrow u W^\top / \|u W^\top\|`, :math:`u \leftarrow v W / \|v W\|`,
  :math:`\sigma = v W u^\top`. :math:`u` and :math:`v` are constants for the
  gradient; :math:`\sigma` is not (the paper's gradient). Biases are untouched.

  Built on :class:`flax.linen.SpectralNorm`. Must be called inside a compact
  method of the module that owns ``layer`` (its parameters keep that module's
  names, e.g. ``params/conv1/kernel``, exactly as without spectral
  normalisation). The estimate lives in the 'batch_stats' collection of a
  sibling module ``f"{layer.name}_sn"`` (or ``name``), under flat keys
  ``f"{layer.name}/kernel/u"`` (shape ``(1, out)``, drawn N(0, 1) from the
  'params' rng at init, so deterministic given the init key) and
  ``f"{layer.name}/kernel/sigma"`` (``()``, 1 at init). In training
  (``train=True``, applied with ``mutable=['batch_stats']``) the new ``u`` and
  ``sigma`` are stored; otherwise they are left as they are, but the layer still
  runs ``n_steps`` power iterations from the stored ``u`` and divides by that
  fresh estimate (Flax's behaviour: evaluation is deterministic, not a read of
  the stored ``sigma``).

  Args:
    layer: a Dense / Conv / Embed (any module) created in the calling compact method.
    train: whether to store the updated power-iteration state.
    n_steps: power iterations per call (1 in the paper); must be >= 1.
    enabled: False returns ``layer`` itself (for ablations; same parameter tree).
    name: name of the ``nn.SpectralNorm`` module (default ``f"{layer.name}_sn"``).

  Returns:
    A callable taking ``layer``'s own call arguments.
  """
  if not enabled:
    return layer
  _check_n_steps(n_steps)
  if name is None and layer.name is not None:
    name = f"{layer.name}_sn"
  return functools.partial(_SpectralNorm(layer, n_steps=n_steps, name=name), update_stats=train)


class SpectralNormalized(nn.Module):
  r"""A whole network with every weight of rank >= 2 spectrally normalised (Miyato et al., 2018).

  Miyato, Kataoka, Koyama & Yoshida (2018), "Spectral Normalization for
  Generative Adversarial Networks", ICLR: the discriminator's layers are
  constrained to :math:`\sigma(\bar W) = 1`, so the network is (for 1-Lipschitz
  activations) 1-Lipschitz. Each weight :math:`W` of ``inner`` of rank >= 2 is
  replaced by :math:`W / \sigma(W)` as in :func:`spectral_norm` (convolution
  kernels viewed as ``(kh*kw*in, out)``); 1-D parameters (biases, BatchNorm
  scales and offsets) and ``inner``'s own non-parameter state are untouched.

  Follows the model contract of :mod:`jaxgan.state`: ``__call__(x, labels=None,
  *, train=True)``, forwarding ``labels`` only when ``inner``'s ``__call__``
  takes labels (otherwise they are ignored, like jaxgan's unconditional models
  do) and ``train`` only when it takes ``train`` (:class:`jaxgan.state.ModuleCall`
  decides). Power iteration state is updated when ``train`` is True.

  Variables: ``inner``'s parameters under ``params/inner/...`` (the same tree
  as ``inner`` alone, one level down); its own BatchNorm statistics under
  ``batch_stats/inner/...``; the power-iteration state under
  ``batch_stats/sn/"inner/<layer path>/kernel/u"`` and ``.../sigma`` (flat keys).
  A network whose layers are already spectrally normalised (e.g.
  :class:`jaxgan.models.sngan.SNGANDiscriminator`) can be wrapped: its own
  ``u`` / ``sigma`` state is left alone and the second normalisation divides
  by ~1 (wasted work only).

  Attributes:
    inner: the network to normalise (a Flax module, unbound).
    n_steps: power iterations per call (1 in the paper).
  """

  inner: nn.Module
  n_steps: int = 1

  @property
  def is_conditional(self) -> bool:
    """``inner.is_conditional`` (False when ``inner`` does not say)."""
    return bool(getattr(self.inner, "is_conditional", False))

  @property
  def num_classes(self) -> int:
    """``inner.num_classes`` (0 when ``inner`` has none)."""
    return int(getattr(self.inner, "num_classes", 0) or 0)

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    _check_n_steps(self.n_steps)
    call = ModuleCall.of(self.inner)
    args = (x, labels) if call.takes_labels else (x,)
    kwargs = {"train": train} if call.takes_train else {}
    return _SpectralNorm(self.inner, n_steps=self.n_steps, name="sn")(*args, update_stats=train, **kwargs)
