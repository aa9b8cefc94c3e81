"""SNGAN ResNet networks (Miyato et al., 2018) with the projection and AC-GAN heads.

What lives here:

* :class:`SNGANGenerator` -- the ResNet generator of Miyato, Kataoka, Koyama &
  Yoshida (2018), "Spectral Normalization for Generative Adversarial
  Networks", ICLR, appendix B (Tables 4-5: CIFAR-10 32x32 and STL-10 48x48),
  in the layouts of Mimicry's ``ResNetGenerator32`` / ``ResNetGenerator48``;
  unconditional, or class-conditional through categorical conditional
  BatchNorm (Miyato & Koyama, 2018).
* :class:`SNGANDiscriminator` -- the matching ResNet discriminator with every
  convolution and dense layer spectrally normalised
  (:func:`jaxgan.models.layers.spectral_norm`), global sum pooling and a
  linear output; optionally the projection head of Miyato & Koyama (2018),
  "cGANs with Projection Discriminator", ICLR, and/or an AC-GAN auxiliary
  classifier (Odena, Olah & Shlens, 2017, "Conditional Image Synthesis with
  Auxiliary Classifier GANs", ICML).
* The blocks they are built of: :class:`GBlock`, :class:`DBlock`,
  :class:`OptimizedDBlock`, and :class:`ConditionalBatchNorm`.

Layouts (``layout``, from ``image_size`` by default: ``"stl"`` for 48 px,
``"cifar"`` otherwise), with ``b = image_size // 8`` and ``w = width``::

    G "cifar" (32 px: b=4, w=256):  z -> Dense(b*b*w) -> GBlock(w) x3 -> BN -> ReLU -> Conv3x3(C) -> tanh
    G "stl"   (48 px: b=6, w=512):  z -> Dense(b*b*w) -> GBlock(w/2, w/4, w/8) -> BN -> ReLU -> Conv3x3(C) -> tanh
    D "cifar" (w=128):  Opt(w) -> DBlock(w, down) -> DBlock(w) -> DBlock(w) -> ReLU -> sum -> Dense(1)
    D "stl"   (w=64):   Opt(w) -> DBlock(2w, down) -> DBlock(4w, down) -> DBlock(8w, down) -> DBlock(16w)
                        -> ReLU -> sum -> Dense(1)

Initialisation follows Mimicry (and the Chainer original): Xavier-uniform with
gain sqrt(2) on the 3x3 convolutions of the residual branches, gain 1 on the
1x1 shortcuts, the dense layers, the class embeddings and the output
convolution. Biases start at zero (Chainer's default; PyTorch, hence Mimicry,
draws them from U(+-1/sqrt(fan_in))). Up-sampling is nearest-neighbour as in
the paper's Chainer code (Mimicry's GBlock uses bilinear).

Generators map ``(z, labels=None, *, train)`` to NHWC images in [-1, 1];
discriminators map ``(x, labels=None, *, train)`` to raw logits (B,) float32,
or to ``(logits, class_logits)`` with an AC-GAN head. ``labels`` are int class
ids (B,), required when ``num_classes > 0`` and ignored otherwise.

``GENERATORS`` and ``DISCRIMINATORS`` map registry names to the module classes;
every class has a ``tiny(**overrides)`` constructor for fast tests.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models import layers

__all__ = [
  "ConditionalBatchNorm",
  "GBlock",
  "DBlock",
  "OptimizedDBlock",
  "SNGANGenerator",
  "SNGANDiscriminator",
  "resolve_layout",
  "GENERATORS",
  "DISCRIMINATORS",
]

_RESIDUAL_INIT = layers.glorot_uniform_init(math.sqrt(2.0))
_UNIT_INIT = layers.glorot_uniform_init(1.0)
_LAYOUTS = ("cifar", "stl")


def resolve_layout(image_size: int, layout: str | None) -> str:
  """``layout`` checked, or the default for ``image_size``: ``"stl"`` for 48 px, ``"cifar"`` otherwise."""
  if layout is None:
    return "stl" if image_size == 48 else "cifar"
  if layout not in _LAYOUTS:
    raise ValueError(f"layout must be one of {_LAYOUTS} or None, got {layout!r}")
  return layout


def _avg_pool2(h: jax.Array) -> jax.Array:
  return nn.avg_pool(h, (2, 2), strides=(2, 2), padding="VALID")


def _sn(module: nn.Module, layer: nn.Module, train: bool) -> Any:
  """``layer`` spectrally normalised with ``module``'s settings (``sn_steps``; off when ``spectral_norm`` is False)."""
  return layers.spectral_norm(layer, train=train, n_steps=module.sn_steps, enabled=module.spectral_norm)


def _conv(module: nn.Module, features: int, size: int, init: Any, name: str) -> nn.Conv:
  """A stride-1 'SAME' ``size`` x ``size`` convolution with a bias, in ``module``'s dtypes."""
  return nn.Conv(
    features,
    (size, size),
    padding="SAME",
    kernel_init=init,
    dtype=module.dtype,
    param_dtype=module.param_dtype,
    name=name,
  )


class ConditionalBatchNorm(nn.Module):
  r"""Categorical conditional BatchNorm (Dumoulin et al., 2017; de Vries et al., 2017), as in Miyato & Koyama (2018).

  .. math::  \mathrm{CBN}(h, y) = \gamma_y \odot \frac{h - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta_y,

  with :math:`\mu, \sigma^2` the per-channel batch statistics (running
  averages in evaluation; :func:`jaxgan.models.layers.batch_norm` without its
  own affine part, submodule ``"bn"``) and :math:`\gamma_y, \beta_y` rows of
  the class embeddings ``"gamma"`` (initialised to 1) and ``"beta"`` (0), the
  ``CategoricalConditionalBatchNormalization`` of the paper's Chainer code.
  With ``num_classes == 0`` it is plain BatchNorm with a learned scale and
  offset (and ``labels`` are ignored).

  Attributes:
    num_classes: number of classes (0: unconditional).
  """

  num_classes: int = 0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h, labels=None, *, train: bool = True):
    if self.num_classes <= 0:
      return layers.batch_norm(train, self.dtype, self.param_dtype, "bn")(h)
    labels = layers.require_labels(labels)
    h = layers.batch_norm(train, self.dtype, self.param_dtype, "bn", affine=False)(h)
    features = h.shape[-1]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    gamma = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.ones, name="gamma", **kw)(labels)
    beta = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.zeros, name="beta", **kw)(labels)
    return gamma[:, None, None, :] * h + beta[:, None, None, :]


class GBlock(nn.Module):
  """Generator residual block of SNGAN (Miyato et al., 2018, appendix B), pre-activation, up-sampling x2::

      residual: CBN -> ReLU -> up x2 -> Conv3x3(hidden) -> CBN -> ReLU -> Conv3x3(features)
      shortcut: up x2 -> Conv1x1(features)

  (``"bn1"``, ``"conv1"``, ``"bn2"``, ``"conv2"``, ``"shortcut"``). CBN is
  :class:`ConditionalBatchNorm` (plain BatchNorm when ``num_classes == 0``);
  up-sampling is nearest-neighbour. Output: ``residual + shortcut``.

  Attributes:
    features: output channels.
    hidden: channels of the first convolution (default ``features``).
    num_classes: classes of the conditional BatchNorm (0: unconditional).
  """

  features: int
  hidden: int | None = None
  num_classes: int = 0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    hidden = self.features if self.hidden is None else self.hidden
    cbn = dict(num_classes=self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)
    h = nn.relu(ConditionalBatchNorm(**cbn, name="bn1")(x, labels, train=train))
    h = _conv(self, hidden, 3, _RESIDUAL_INIT, "conv1")(layers.upsample_nearest(h, 2))
    h = nn.relu(ConditionalBatchNorm(**cbn, name="bn2")(h, labels, train=train))
    h = _conv(self, self.features, 3, _RESIDUAL_INIT, "conv2")(h)
    return h + _conv(self, self.features, 1, _UNIT_INIT, "shortcut")(layers.upsample_nearest(x, 2))


class DBlock(nn.Module):
  """Discriminator residual block of SNGAN (Miyato et al., 2018, appendix B), pre-activation::

      residual: ReLU -> Conv3x3(hidden) -> ReLU -> Conv3x3(features) -> [avgpool 2x2]
      shortcut: Conv1x1(features) -> [avgpool 2x2]      (identity when not down and in == features)

  (``"conv1"``, ``"conv2"``, ``"shortcut"``), every convolution spectrally
  normalised unless ``spectral_norm`` is False. Output: ``residual + shortcut``.

  Attributes:
    features: output channels.
    hidden: channels of the first convolution (default: the input channels, as in Mimicry).
    down: average-pool the output by 2.
    spectral_norm: spectrally normalise the convolutions.
    sn_steps: power iterations per call.
  """

  features: int
  hidden: int | None = None
  down: bool = False
  spectral_norm: bool = True
  sn_steps: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    hidden = x.shape[-1] if self.hidden is None else self.hidden

    h = _sn(self, _conv(self, hidden, 3, _RESIDUAL_INIT, "conv1"), train)(nn.relu(x))
    h = _sn(self, _conv(self, self.features, 3, _RESIDUAL_INIT, "conv2"), train)(nn.relu(h))
    shortcut = x
    if self.down or x.shape[-1] != self.features:
      shortcut = _sn(self, _conv(self, self.features, 1, _UNIT_INIT, "shortcut"), train)(x)
    if self.down:
      h, shortcut = _avg_pool2(h), _avg_pool2(shortcut)
    return h + shortcut


class OptimizedDBlock(nn.Module):
  """First discriminator block of SNGAN (Miyato et al., 2018; the Chainer code's ``OptimizedBlock``)::

      residual: Conv3x3(features) -> ReLU -> Conv3x3(features) -> avgpool 2x2
      shortcut: avgpool 2x2 -> Conv1x1(features)

  (``"conv1"``, ``"conv2"``, ``"shortcut"``): no activation on the image, and
  the shortcut pools before its convolution. Convolutions spectrally
  normalised unless ``spectral_norm`` is False.

  Attributes:
    features: output channels.
    spectral_norm: spectrally normalise the convolutions.
    sn_steps: power iterations per call.
  """

  features: int
  spectral_norm: bool = True
  sn_steps: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    h = nn.relu(_sn(self, _conv(self, self.features, 3, _RESIDUAL_INIT, "conv1"), train)(x))
    h = _avg_pool2(_sn(self, _conv(self, self.features, 3, _RESIDUAL_INIT, "conv2"), train)(h))
    return h + _sn(self, _conv(self, self.features, 1, _UNIT_INIT, "shortcut"), train)(_avg_pool2(x))


class SNGANGenerator(layers.TinyMixin, nn.Module):
  """ResNet generator of SNGAN: Miyato, Kataoka, Koyama & Yoshida (2018),
  "Spectral Normalization for Generative Adversarial Networks", ICLR,
  appendix B (Table 4 for CIFAR-10, Table 5 for STL-10); Mimicry's
  ``ResNetGenerator32`` / ``ResNetGenerator48``.

  Architecture (``b = image_size // 8``; channels per layout)::

      z -> Dense(b*b*c0) ("dense") -> reshape (B, b, b, c0)
      GBlock(c1) -> GBlock(c2) -> GBlock(c3)              ("block1".."block3"; each up-samples x2)
      BN ("bn_out") -> ReLU -> Conv3x3(channels) ("conv_out") -> tanh

  with ``(c0, c1, c2, c3) = (w, w, w, w)`` for ``layout="cifar"`` (32 px:
  b = 4, w = 256) and ``(w, w/2, w/4, w/8)`` for ``"stl"`` (48 px: b = 6,
  w = 512). With ``num_classes > 0`` every BatchNorm of the blocks is a
  categorical conditional BatchNorm (:class:`ConditionalBatchNorm`; Miyato &
  Koyama, 2018, "cGANs with Projection Discriminator"), as in the paper's
  conditional generator; the output BatchNorm stays unconditional as in
  their code. BatchNorm: momentum 0.9, epsilon 1e-5, statistics in
  'batch_stats'. The latent size is whatever ``z`` has (128 in the paper).
  Outputs float32 NHWC images in [-1, 1].

  Attributes:
    image_size: output height = width, a multiple of 8 (32, 48; 8 or 16 for tests).
    channels: output channels (3).
    width: ``w`` above (None: 256 for "cifar", 512 for "stl").
    num_classes: classes of the conditional BatchNorm (0: unconditional).
    layout: "cifar" or "stl" (None: "stl" for 48 px, "cifar" otherwise).
  """

  image_size: int = 32
  channels: int = 3
  width: int | None = None
  num_classes: int = 0
  layout: str | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  _tiny_config: ClassVar[dict] = {"image_size": 8, "channels": 1, "width": 8}

  @property
  def is_conditional(self) -> bool:
    """True when ``num_classes > 0`` (labels required)."""
    return self.num_classes > 0

  def block_channels(self) -> tuple[int, int, int, int]:
    """Channels of the projection and of the three blocks, ``(c0, c1, c2, c3)``."""
    layout = resolve_layout(self.image_size, self.layout)
    if layout == "cifar":
      w = 256 if self.width is None else self.width
      return (w, w, w, w)
    w = 512 if self.width is None else self.width
    if w % 8:
      raise ValueError(f'width must be a multiple of 8 for layout "stl", got {w}')
    return (w, w // 2, w // 4, w // 8)

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool = True):
    if self.image_size % 8 or self.image_size < 8:
      raise ValueError(f"image_size must be a positive multiple of 8, got {self.image_size}")
    if self.num_classes > 0:
      labels = layers.require_labels(labels)
    else:
      labels = None
    b = self.image_size // 8
    c0, *blocks = self.block_channels()
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = nn.Dense(b * b * c0, kernel_init=_UNIT_INIT, name="dense", **kw)(layers.flatten(z, self.dtype))
    h = h.reshape(h.shape[0], b, b, c0)
    for i, features in enumerate(blocks):
      h = GBlock(features, num_classes=self.num_classes, name=f"block{i + 1}", **kw)(h, labels, train=train)
    h = nn.relu(layers.batch_norm(train, self.dtype, self.param_dtype, "bn_out")(h))
    h = _conv(self, self.channels, 3, _UNIT_INIT, "conv_out")(h)
    return jnp.tanh(h).astype(jnp.float32)


class SNGANDiscriminator(layers.TinyMixin, nn.Module):
  r"""ResNet discriminator of SNGAN: Miyato, Kataoka, Koyama & Yoshida (2018),
  "Spectral Normalization for Generative Adversarial Networks", ICLR,
  appendix B; Mimicry's ``ResNetDiscriminator32`` / ``ResNetDiscriminator48``.

  Architecture (every convolution, dense and embedding layer spectrally
  normalised, :func:`jaxgan.models.layers.spectral_norm`; no BatchNorm)::

      "cifar" (32 px, w = 128): OptimizedDBlock(w) -> DBlock(w, down) -> DBlock(w) -> DBlock(w)
      "stl"   (48 px, w = 64):  OptimizedDBlock(w) -> DBlock(2w, down) -> DBlock(4w, down)
                                -> DBlock(8w, down) -> DBlock(16w)
      ReLU -> global sum pooling -> phi(x) (B, C)
      logit = Dense(1)(phi) ("out")

  (blocks ``"block1"``, ...). With ``num_classes > 0`` the projection
  discriminator of Miyato & Koyama (2018), "cGANs with Projection
  Discriminator", ICLR:

  .. math::  f(x, y) = \psi(\phi(x)) + \langle V e_y, \phi(x) \rangle,

  with :math:`V` a spectrally normalised class embedding (``"embed"``).
  With ``aux_classes > 0`` an AC-GAN head (Odena, Olah & Shlens, 2017,
  "Conditional Image Synthesis with Auxiliary Classifier GANs"): a
  spectrally normalised ``Dense(aux_classes)`` (``"aux"``) on
  :math:`\phi(x)`, and the module returns ``(logits (B,), class_logits
  (B, aux_classes))``; otherwise raw logits (B,), float32.

  Power-iteration state (``u``, ``sigma`` per weight) lives in 'batch_stats'
  (e.g. ``batch_stats/block1/conv1_sn/"conv1/kernel/u"``) and is updated in
  training mode only, so apply with ``mutable=['batch_stats']`` when
  ``train=True``.

  Attributes:
    image_size: input height = width (32, 48; 8 or 16 for tests); a multiple
      of 4 for "cifar", of 16 for "stl".
    width: ``w`` above (None: 128 for "cifar", 64 for "stl").
    num_classes: classes of the projection head (0: unconditional).
    aux_classes: classes of the AC-GAN head (0: none).
    layout: "cifar" or "stl" (None: "stl" for 48 px, "cifar" otherwise).
    spectral_norm: False drops spectral normalisation everywhere (ablation;
      same parameter tree, no 'batch_stats').
    sn_steps: power iterations per call (1 in the paper).
  """

  image_size: int = 32
  width: int | None = None
  num_classes: int = 0
  aux_classes: int = 0
  layout: str | None = None
  spectral_norm: bool = True
  sn_steps: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  _tiny_config: ClassVar[dict] = {"image_size": 8, "width": 8}

  @property
  def is_conditional(self) -> bool:
    """True when ``num_classes > 0`` (the projection head needs labels)."""
    return self.num_classes > 0

  def block_specs(self) -> list[tuple[int, bool]]:
    """``(features, down)`` of every block; the first is the :class:`OptimizedDBlock` (always down)."""
    layout = resolve_layout(self.image_size, self.layout)
    if layout == "cifar":
      w = 128 if self.width is None else self.width
      return [(w, True), (w, True), (w, False), (w, False)]
    w = 64 if self.width is None else self.width
    return [(w, True), (2 * w, True), (4 * w, True), (8 * w, True), (16 * w, False)]

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool = True):
    layout = resolve_layout(self.image_size, self.layout)
    multiple = 16 if layout == "stl" else 4
    if self.image_size % multiple:
      raise ValueError(f'image_size must be a multiple of {multiple} for layout "{layout}", got {self.image_size}')
    if x.shape[1] != self.image_size or x.shape[2] != self.image_size:
      raise ValueError(f"expected {self.image_size}x{self.image_size} images, got shape {x.shape}")
    if self.num_classes > 0:
      labels = layers.require_labels(labels)
    kw = dict(spectral_norm=self.spectral_norm, sn_steps=self.sn_steps, dtype=self.dtype, param_dtype=self.param_dtype)
    (first, _), *rest = self.block_specs()
    h = OptimizedDBlock(first, name="block1", **kw)(jnp.asarray(x, self.dtype), train=train)
    for i, (features, down) in enumerate(rest):
      h = DBlock(features, down=down, name=f"block{i + 2}", **kw)(h, train=train)
    phi = jnp.sum(nn.relu(h), axis=(1, 2))  # global sum pooling -> (B, C)

    dense = dict(kernel_init=_UNIT_INIT, dtype=self.dtype, param_dtype=self.param_dtype)
    logit = _sn(self, nn.Dense(1, name="out", **dense), train)(phi)[:, 0]
    if self.num_classes > 0:
      embed = nn.Embed(
        self.num_classes,
        phi.shape[-1],
        embedding_init=_UNIT_INIT,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="embed",
      )
      logit = logit + jnp.sum(_sn(self, embed, train)(labels) * phi, axis=-1)
    logit = logit.astype(jnp.float32)
    if self.aux_classes > 0:
      class_logits = _sn(self, nn.Dense(self.aux_classes, name="aux", **dense), train)(phi)
      return logit, class_logits.astype(jnp.float32)
    return logit


GENERATORS = {"sngan": SNGANGenerator}

DISCRIMINATORS = {"sngan": SNGANDiscriminator}
