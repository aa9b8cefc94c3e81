"""InceptionV3 in Flax with the FID layout (the 2015-12-05 TF graph used by FID).

Architecture (Szegedy et al., "Rethinking the Inception Architecture for
Computer Vision", CVPR 2016) in the variant of the TensorFlow graph
``inception-2015-12-05`` that Heusel et al. (2017) used for FID and that
pytorch-fid ports as ``pt_inception-2015-12-05``.  It differs from the stock
torchvision InceptionV3 in three places, reproduced here:

* 1008 output classes (``fc``: 2048 -> 1008 with bias) instead of 1000;
* average pools inside Mixed_5b..d (A blocks), Mixed_6b..e (C blocks) and
  Mixed_7b (first E block) exclude padding from the count
  (``count_include_pad=False``);
* the pool branch of Mixed_7c (second E block) uses a 3x3 *max* pool.

Every conv is ``BasicConv2d``: conv (no bias) -> BatchNorm(eps=1e-3, inference)
-> ReLU.  The FID feature is the 2048-d global average pool of Mixed_7c
("pool3"); the IS prediction is the softmax of the 1008-way logits.

Preprocessing (inside the jitted function): the input is NHWC in [-1, 1]
(1-channel images are repeated to 3), resized to 299x299 with bilinear
interpolation, half-pixel centres and no antialiasing (as pytorch-fid's
``F.interpolate(..., mode='bilinear', align_corners=False)``), then scaled for
the network.  ``input_scaling='torch'`` (default) feeds ``2 u - 1`` for
``u in [0, 1]`` as pytorch-fid does, i.e. the [-1, 1] input unchanged;
``input_scaling='tf'`` reproduces the TF graph's ``(255 u - 128) / 128``.

Weights
-------
No weights are bundled or downloaded.  Pass ``weights_path=`` or set the
environment variable ``JAXGAN_INCEPTION_WEIGHTS`` to a local file:

* ``.npz`` (recommended): ``np.savez(path, **flat)`` where ``flat`` maps
  '/'-joined flax variable paths to arrays, e.g.::

      params/Conv2d_1a_3x3/conv/kernel        (3, 3, 3, 32)     HWIO
      params/Conv2d_1a_3x3/bn/scale           (32,)
      params/Conv2d_1a_3x3/bn/bias            (32,)
      batch_stats/Conv2d_1a_3x3/bn/mean       (32,)
      batch_stats/Conv2d_1a_3x3/bn/var        (32,)
      params/Mixed_5b/branch5x5_2/conv/kernel (5, 5, 48, 64)
      ...
      params/fc/kernel                        (2048, 1008)
      params/fc/bias                          (1008,)

  (:func:`flatten_variables` / :func:`save_inception_weights` produce exactly this
  from a variables dict, and :func:`expected_weight_shapes` lists all keys.)

Only ``.npz`` files are read, with ``allow_pickle=False``: a weight file is
data, and unpickling a user-supplied file would run whatever code it holds.
A ``.pkl`` / ``.pth`` (or any other) file is refused unread; convert it once,
where you trust it, with the snippet below.

Module names equal the torchvision / pytorch-fid names, so converting the
pytorch-fid checkpoint ``pt_inception-2015-12-05-6726825d.pth`` is mechanical
(run once, wherever torch is installed)::

    import numpy as np, torch
    from jaxgan.metrics.inception import convert_pytorch_fid_state_dict
    sd = torch.load("pt_inception-2015-12-05-6726825d.pth", map_location="cpu")
    flat = convert_pytorch_fid_state_dict({k: v.numpy() for k, v in sd.items()})
    np.savez("inception_fid.npz", **flat)
    # export JAXGAN_INCEPTION_WEIGHTS=$PWD/inception_fid.npz

The converter maps ``X.conv.weight`` (O, I, H, W) -> ``params/X/conv/kernel``
(H, W, I, O); ``X.bn.weight/bias`` -> ``params/X/bn/scale|bias``;
``X.bn.running_mean/var`` -> ``batch_stats/X/bn/mean|var``; ``fc.weight``
(1008, 2048) -> ``params/fc/kernel`` transposed; ``fc.bias`` -> ``params/fc/bias``;
it drops ``num_batches_tracked`` and ``AuxLogits.*``.

Testing without weights
-----------------------
``InceptionFeatures.random(key)`` builds the same network with random
initialisation so the full path (resize, scaling, every block, pooling, logits)
is exercised end to end.  ``resize_to`` overrides the 299 resize (the network
accepts anything >= 75); it exists only to keep CPU tests fast -- FID numbers
are only comparable at the default 299.
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

__all__ = [
  "ENV_VAR",
  "InceptionV3FID",
  "InceptionFeatures",
  "preprocess",
  "load_inception_weights",
  "save_inception_weights",
  "flatten_variables",
  "unflatten_variables",
  "expected_weight_shapes",
  "convert_pytorch_fid_state_dict",
]

ENV_VAR = "JAXGAN_INCEPTION_WEIGHTS"
FID_RESIZE = 299
NUM_CLASSES = 1008
POOL_DIM = 2048

Pad = int | tuple[int, int]


class BasicConv2d(nn.Module):
  """conv (no bias) -> BatchNorm(eps=1e-3, running stats) -> ReLU."""

  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: Pad = 0
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    ph, pw = (self.padding, self.padding) if isinstance(self.padding, int) else self.padding
    x = nn.Conv(
      self.features,
      self.kernel,
      strides=(self.strides, self.strides),
      padding=((ph, ph), (pw, pw)),
      use_bias=False,
      precision=self.precision,
      name="conv",
    )(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg3(x):  # 3x3 stride 1 pad 1, padding excluded from the average (FID graph)
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max3s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class _InceptionModule(nn.Module):
  """Base of the Inception modules (each declares a ``precision`` field): :meth:`conv` makes their convs."""

  def conv(self, features: int, kernel: tuple[int, int], *, name: str, strides: int = 1, padding: Pad = 0):
    """A :class:`BasicConv2d` child named ``name`` at this module's ``precision``."""
    return BasicConv2d(features, kernel, strides=strides, padding=padding, precision=self.precision, name=name)


class InceptionA(_InceptionModule):
  pool_features: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    b1 = self.conv(64, (1, 1), name="branch1x1")(x)
    b5 = self.conv(48, (1, 1), name="branch5x5_1")(x)
    b5 = self.conv(64, (5, 5), padding=2, name="branch5x5_2")(b5)
    b3 = self.conv(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = self.conv(96, (3, 3), padding=1, name="branch3x3dbl_2")(b3)
    b3 = self.conv(96, (3, 3), padding=1, name="branch3x3dbl_3")(b3)
    bp = self.conv(self.pool_features, (1, 1), name="branch_pool")(_avg3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_InceptionModule):
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    b3 = self.conv(384, (3, 3), strides=2, name="branch3x3")(x)
    bd = self.conv(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = self.conv(96, (3, 3), padding=1, name="branch3x3dbl_2")(bd)
    bd = self.conv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max3s2(x)], axis=-1)


class InceptionC(_InceptionModule):
  channels_7x7: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = self.conv(192, (1, 1), name="branch1x1")(x)
    b7 = self.conv(c7, (1, 1), name="branch7x7_1")(x)
    b7 = self.conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = self.conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = self.conv(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = self.conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = self.conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = self.conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = self.conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = self.conv(192, (1, 1), name="branch_pool")(_avg3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_InceptionModule):
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    b3 = self.conv(192, (1, 1), name="branch3x3_1")(x)
    b3 = self.conv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
    b7 = self.conv(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = self.conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = self.conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = self.conv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max3s2(x)], axis=-1)


class InceptionE(_InceptionModule):
  """E block; ``max_pool_branch`` selects the Mixed_7c (FID E_2) pool branch."""

  max_pool_branch: bool = False
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    def split(h, name):  # parallel 1x3 and 3x1 convs of h, concatenated
      a = self.conv(384, (1, 3), padding=(0, 1), name=f"{name}a")(h)
      b = self.conv(384, (3, 1), padding=(1, 0), name=f"{name}b")(h)
      return jnp.concatenate([a, b], axis=-1)

    b1 = self.conv(320, (1, 1), name="branch1x1")(x)
    b3 = split(self.conv(384, (1, 1), name="branch3x3_1")(x), "branch3x3_2")
    bd = self.conv(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = split(self.conv(384, (3, 3), padding=1, name="branch3x3dbl_2")(bd), "branch3x3dbl_3")
    if self.max_pool_branch:
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg3(x)
    bp = self.conv(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3FID(_InceptionModule):
  """The FID InceptionV3 trunk on already preprocessed 3-channel NHWC input.

  Returns ``(pool3, logits)`` with shapes (N, 2048) and (N, 1008).
  Needs spatial size >= 75.
  """

  num_classes: int = NUM_CLASSES
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    P = self.precision
    x = self.conv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
    x = self.conv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = self.conv(64, (3, 3), padding=1, name="Conv2d_2b_3x3")(x)
    x = _max3s2(x)
    x = self.conv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = self.conv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max3s2(x)
    x = InceptionA(32, precision=P, name="Mixed_5b")(x)
    x = InceptionA(64, precision=P, name="Mixed_5c")(x)
    x = InceptionA(64, precision=P, name="Mixed_5d")(x)
    x = InceptionB(precision=P, name="Mixed_6a")(x)
    x = InceptionC(128, precision=P, name="Mixed_6b")(x)
    x = InceptionC(160, precision=P, name="Mixed_6c")(x)
    x = InceptionC(160, precision=P, name="Mixed_6d")(x)
    x = InceptionC(192, precision=P, name="Mixed_6e")(x)
    x = InceptionD(precision=P, name="Mixed_7a")(x)
    x = InceptionE(False, precision=P, name="Mixed_7b")(x)
    x = InceptionE(True, precision=P, name="Mixed_7c")(x)
    pool3 = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, precision=P, name="fc")(pool3)
    return pool3, logits


def preprocess(images: jax.Array, resize_to: int = FID_RESIZE, input_scaling: str = "torch") -> jax.Array:
  """[-1, 1] NHWC images (C in {1, 3}) -> network input (N, resize_to, resize_to, 3)."""
  x = jnp.asarray(images, jnp.float32)
  if x.ndim != 4:
    raise ValueError(f"expected NHWC images, got shape {x.shape}")
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  elif x.shape[-1] != 3:
    raise ValueError(f"expected 1 or 3 channels (NHWC), got {x.shape[-1]}")
  if x.shape[1:3] != (resize_to, resize_to):
    x = jax.image.resize(x, (x.shape[0], resize_to, resize_to, 3), "bilinear", antialias=False)
  if input_scaling == "torch":
    return x  # 2u - 1 with u = (x + 1)/2 is x itself
  if input_scaling == "tf":
    u = (x + 1.0) * 0.5
    return (u * 255.0 - 128.0) / 128.0
  raise ValueError(f"input_scaling must be 'torch' or 'tf', got {input_scaling!r}")


# ----------------------------------------------------------------------------- weights


def flatten_variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Nested flax variables -> {'params/Mixed_5b/branch1x1/conv/kernel': array, ...}."""
  flat = traverse_util.flatten_dict(dict(variables), sep="/")
  return {k: np.asarray(v) for k, v in flat.items()}


def unflatten_variables(flat: Mapping[str, Any]) -> dict:
  return traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()}, sep="/")


def _init_variables(key: jax.Array, size: int = 75) -> dict:
  model = InceptionV3FID()
  return model.init(key, jnp.zeros((1, size, size, 3), jnp.float32))


def _random_variables(key: jax.Array) -> dict:
  """Random variables in the FID layout, drawn leaf by leaf in numpy (no tracing, ~1 s).

  Conv kernels ~ N(0, 2 / fan_in) (He init, so ReLU activations keep an O(1)
  scale through the deep trunk), ``fc`` kernel ~ N(0, 1 / fan_in), BN identity
  (scale 1, bias 0, mean 0, var 1), biases 0.
  """
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
  flat = {}
  for k, shape in expected_weight_shapes().items():
    if k.endswith("kernel"):
      fan_in = int(np.prod(shape[:-1]))
      gain = 2.0 if k.endswith("conv/kernel") else 1.0
      flat[k] = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(gain / fan_in))
    elif k.endswith("/scale") or k.endswith("/var"):
      flat[k] = np.ones(shape, np.float32)
    else:
      flat[k] = np.zeros(shape, np.float32)
  return unflatten_variables(flat)


def expected_weight_shapes() -> dict[str, tuple[int, ...]]:
  """All flat keys of the weight file and their shapes (no computation: eval_shape)."""
  shapes = jax.eval_shape(_init_variables, jax.random.PRNGKey(0))
  return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(dict(shapes), sep="/").items()}


def _missing_weights_error(detail: str) -> FileNotFoundError:
  return FileNotFoundError(
    f"Inception FID weights not found ({detail}): pass weights_path= or set {ENV_VAR} to a "
    f"local .npz of the FID InceptionV3 (pt_inception-2015-12-05) flax variables "
    f"- see jaxgan/metrics/inception.py for the layout and the conversion snippet; "
    f"nothing is ever downloaded."
  )


def load_inception_weights(weights_path: str | os.PathLike | None = None) -> dict:
  """Load and validate the FID Inception variables from ``weights_path`` or ``$JAXGAN_INCEPTION_WEIGHTS``.

  Only ``.npz`` files are read (``allow_pickle=False``): any other file, a
  pickle above all, is refused without being opened, so a weight file can
  never run code.

  Raises:
    FileNotFoundError: no path given/set, or the file does not exist.
    ValueError: not an ``.npz`` file, an unreadable one, or keys or shapes
      that do not match :func:`expected_weight_shapes`.
  """
  path = weights_path if weights_path is not None else os.environ.get(ENV_VAR)
  if not path:
    raise _missing_weights_error(f"no weights_path given and ${ENV_VAR} is unset")
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise _missing_weights_error(f"no file at {path!r}")
  if not path.endswith(".npz"):
    raise ValueError(
      f"{path}: not an .npz file; weights are read only from .npz (a pickle could run code): convert it with "
      "numpy.savez (see jaxgan/metrics/inception.py for the snippet)"
    )
  try:
    with np.load(path, allow_pickle=False) as f:
      flat = {k: np.asarray(f[k]) for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise ValueError(f"{path}: not a readable .npz of arrays ({type(e).__name__}: {e})") from None
  expected = expected_weight_shapes()
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  if missing or extra:
    raise ValueError(
      f"{path}: weight keys do not match the FID InceptionV3 layout; "
      f"missing {len(missing)} (e.g. {missing[:3]}), unexpected {len(extra)} (e.g. {extra[:3]})"
    )
  bad = [(k, flat[k].shape, s) for k, s in expected.items() if tuple(flat[k].shape) != s]
  if bad:
    raise ValueError(f"{path}: shape mismatch for {len(bad)} arrays, e.g. {bad[:3]}")
  return unflatten_variables({k: np.asarray(v, np.float32) for k, v in flat.items()})


def save_inception_weights(path: str | os.PathLike, variables: Mapping[str, Any]) -> None:
  """Write variables in the documented ``.npz`` layout (flat '/'-joined keys)."""
  np.savez(path, **flatten_variables(variables))


def convert_pytorch_fid_state_dict(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """pytorch-fid ``FIDInceptionA/C/E`` state dict (numpy arrays) -> flat flax keys (see module doc)."""
  flat: dict[str, np.ndarray] = {}
  for name, value in state_dict.items():
    v = np.asarray(value)
    if name.endswith("num_batches_tracked") or name.startswith("AuxLogits."):
      continue
    parts = name.split(".")
    module, leaf = "/".join(parts[:-1]), parts[-1]
    if name == "fc.weight":
      flat["params/fc/kernel"] = v.T
    elif name == "fc.bias":
      flat["params/fc/bias"] = v
    elif parts[-2] == "conv" and leaf == "weight":
      flat[f"params/{module}/kernel"] = np.transpose(v, (2, 3, 1, 0))
    elif parts[-2] == "bn" and leaf in ("weight", "bias"):
      flat[f"params/{module}/{'scale' if leaf == 'weight' else 'bias'}"] = v
    elif parts[-2] == "bn" and leaf in ("running_mean", "running_var"):
      flat[f"batch_stats/{module}/{'mean' if leaf == 'running_mean' else 'var'}"] = v
    else:
      raise ValueError(f"unexpected key in state dict: {name}")
  return flat


# ----------------------------------------------------------------------------- extractor


@functools.cache
def _forward_fn(resize_to: int, input_scaling: str, precision: Any):
  """One jitted forward per configuration, shared by all extractors (weights are an argument)."""
  model = InceptionV3FID(precision=precision)

  def forward(variables, images):
    return model.apply(variables, preprocess(images, resize_to, input_scaling))

  return jax.jit(forward)


class InceptionFeatures:
  """FID Inception pool3 feature extractor (implements ``FeatureExtractor``).

  ``extractor(images)`` maps NHWC images in [-1, 1] to (N, 2048) pool3
  features; :meth:`logits` gives the (N, 1008) logits for the Inception Score
  and :meth:`features_and_logits` both in one pass.  All are jitted.

  Construct with ``InceptionFeatures(weights_path=None)`` (loads the real
  weights from the path or ``$JAXGAN_INCEPTION_WEIGHTS``; raises
  ``FileNotFoundError`` if absent) or ``InceptionFeatures.random(key)``.

  Args:
    weights_path: local weight file (see module docstring).
    variables: already-loaded variables (overrides ``weights_path``).
    resize_to: input resize; 299 for FID.  Smaller values are for tests only.
    input_scaling: 'torch' (pytorch-fid, default) or 'tf' (TF graph).
  """

  def __init__(
    self,
    weights_path: str | os.PathLike | None = None,
    *,
    variables: Mapping[str, Any] | None = None,
    resize_to: int = FID_RESIZE,
    input_scaling: str = "torch",
    precision: Any = jax.lax.Precision.HIGHEST,
  ) -> None:
    if resize_to < 75:
      raise ValueError("InceptionV3 needs resize_to >= 75")
    self.variables = variables if variables is not None else load_inception_weights(weights_path)
    self.resize_to = int(resize_to)
    self.input_scaling = input_scaling
    suffix = "" if resize_to == FID_RESIZE else f"_{resize_to}px"
    self.name = f"inception_v3_fid_pool3{suffix}"

    self._forward = _forward_fn(self.resize_to, input_scaling, precision)

  @classmethod
  def random(cls, key: jax.Array, **kwargs: Any) -> InceptionFeatures:
    """Same network with random initialisation (for tests; features are meaningless)."""
    return cls(variables=_random_variables(key), **kwargs)

  def features_and_logits(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self._forward(self.variables, images)

  def __call__(self, images: jax.Array) -> jax.Array:
    return self.features_and_logits(images)[0]

  def logits(self, images: jax.Array) -> jax.Array:
    return self.features_and_logits(images)[1]
