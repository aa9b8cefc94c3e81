"""Mixed-precision dtype policy: bfloat16 compute, float32 parameters and optimiser state.

What lives here:

* :class:`Policy` -- three dtypes: ``compute_dtype`` (activations, matmuls and
  convolutions), ``param_dtype`` (the stored parameters, hence the gradients
  and the optax state) and ``output_dtype`` (what the networks return; losses,
  penalties and metrics are computed in it).
* :data:`POLICIES` / :func:`get_policy` -- ``"float32"`` (the default: everything
  float32) and ``"bfloat16"`` (bf16 compute, float32 params, float32 outputs).
* :func:`apply_policy` -- a copy of a flax module with the policy's
  ``dtype`` / ``param_dtype`` (every jaxgan model has both attributes).

The scheme is the usual mixed-precision recipe of Micikevicius et al. (2018),
"Mixed Precision Training", with bfloat16 (Kalamkar et al., 2019, "A Study of
BFLOAT16 for Deep Learning Training") instead of float16: a float32 master copy
of the weights is cast to bf16 inside each layer, so the update
``theta <- theta - lr * m / (sqrt(v) + eps)`` is applied in float32 and small
updates are not rounded away. bf16 has float32's 8-bit exponent, so no loss
scaling is needed. BatchNorm statistics are reduced in float32 by flax
(``force_float32_reductions``) and kept in float32. The models cast their
outputs to float32, so every loss, gradient penalty and metric of
`jaxgan.steps` is evaluated in float32.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxgan.errors import ConfigError

__all__ = ["Policy", "POLICIES", "get_policy", "apply_policy"]


@dataclasses.dataclass(frozen=True)
class Policy:
  """Which dtype each part of a network uses.

  Attributes:
    name: the ``--precision`` value.
    compute_dtype: dtype of activations and of the matmul / convolution inputs.
    param_dtype: dtype of the stored parameters, gradients and optimiser state.
    output_dtype: dtype of network outputs (and so of losses).
  """

  name: str
  compute_dtype: Any
  param_dtype: Any = jnp.float32
  output_dtype: Any = jnp.float32

  @property
  def is_mixed(self) -> bool:
    return jnp.dtype(self.compute_dtype) != jnp.dtype(self.param_dtype)


POLICIES = {
  "float32": Policy("float32", jnp.float32),
  "bfloat16": Policy("bfloat16", jnp.bfloat16),
}

DEFAULT_PRECISION = "float32"


def get_policy(name: str) -> Policy:
  """The `Policy` called ``name``; a `ConfigError` names the choices otherwise."""
  try:
    return POLICIES[name]
  except KeyError:
    raise ConfigError(f"unknown precision {name!r}: choose one of {', '.join(POLICIES)}") from None


def apply_policy(module, policy: Policy | str):
  """A copy of the flax ``module`` computing in ``policy.compute_dtype``.

  Parameters are created in ``policy.param_dtype``; all submodules read both
  dtypes from the top-level module's attributes, so the copy is complete.
  """
  policy = get_policy(policy) if isinstance(policy, str) else policy
  if not (hasattr(module, "dtype") and hasattr(module, "param_dtype")):
    raise ConfigError(
      f"{type(module).__name__} has no dtype/param_dtype attributes: it cannot follow a precision policy"
    )
  return module.clone(dtype=policy.compute_dtype, param_dtype=policy.param_dtype)
