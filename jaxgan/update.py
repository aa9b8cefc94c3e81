"""The one update primitive every family's steps are built from.

* `apply_network` -- runs a network (a `jaxgan.state.NetState`) on explicit
  parameters and BatchNorm statistics, in training or evaluation mode, with an
  explicit dropout key; returns the outputs and the statistics after the call.
* `update` -- one gradient step of one network, or of several networks that
  share one objective (CycleGAN's two generators): the value and gradient of
  ``loss_fn(params)``, the optimiser applied (`NetState.apply_gradients`), the
  BatchNorm statistics that ``loss_fn`` threaded through its network calls
  stored, a ``finite`` flag over the loss and every gradient, the update
  dropped when it is not finite and ``skip_nonfinite`` is set, and the
  gradient and parameter norms.
* `all_finite`, `keep_if` -- the pieces of the NaN guard, for a researcher's
  own update.
* `uses_batch_norm`, `split_outputs` -- whether a network's statistics are
  BatchNorm's (spectral norm keeps its vectors in the same collection), and a
  discriminator's output split into logits and auxiliary class logits.
* `ema_decay_at` / `ema_update` -- the generator's exponential moving average
  with warm-up, applied inside the compiled step.

An update returns metrics named ``{name}_loss``, ``{name}_grad_norm``,
``{name}_param_norm`` and ``{name}_finite``; `jaxgan.steps.alternating_step`
reduces them over an iteration and derives the ``finite`` flag that
`jaxgan.trainer.fit` checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgan.state import NetState

Array = jax.Array
"""@private The array type of the annotations (`jax.Array`), kept out of the API reference."""
Metrics = dict[str, Array]


def apply_network(
  net: NetState,
  params: Any,
  inputs: Array,
  labels: Array | None = None,
  *,
  train: bool,
  key: Array,
  batch_stats: Any = None,
) -> tuple[Array, Any]:
  """``net`` applied to ``inputs`` with ``params``; returns (outputs, BatchNorm statistics after the call).

  ``batch_stats`` defaults to the network's own (``{}`` for networks without
  BatchNorm). In training mode BatchNorm normalises with the batch's
  statistics and its running averages are updated (the returned statistics);
  in evaluation mode it uses the running averages and ``batch_stats`` comes
  back unchanged. The ``dropout`` stream is drawn from ``key``.
  """
  stats = net.batch_stats if batch_stats is None else batch_stats
  variables = {"params": params}
  if stats:
    variables["batch_stats"] = stats
  if train and stats:
    out, updates = net.apply_fn(variables, inputs, labels, train=True, rngs={"dropout": key}, mutable=["batch_stats"])
    return out, updates["batch_stats"]
  return net.apply_fn(variables, inputs, labels, train=train, rngs={"dropout": key}), stats


def uses_batch_norm(batch_stats: Any) -> bool:
  """True when ``batch_stats`` holds BatchNorm running statistics (leaves named ``mean`` / ``var``).

  The collection also holds other per-network state that is not a statistic
  of the batch -- spectral normalisation's power-iteration vectors ``.../u``
  and ``.../sigma`` -- so "has batch_stats" does not mean "normalises over
  the batch": a discriminator whose outputs depend on the batch sees real and
  fake data in separate passes, any other in one.
  """
  for path, _ in jax.tree_util.tree_leaves_with_path(batch_stats):
    last = path[-1]
    name = getattr(last, "key", getattr(last, "name", None))
    if name in ("mean", "var"):
      return True
  return False


def split_outputs(out: Any) -> tuple[Array, Array | None]:
  """A discriminator's output as (logits, class_logits): an array is logits alone; a pair
  ``(logits, class_logits)`` comes from a discriminator with an auxiliary classifier (AC-GAN)."""
  if isinstance(out, (tuple, list)):
    if len(out) != 2:
      raise ValueError(f"a discriminator returns logits or (logits, class_logits), got a {len(out)}-tuple")
    return out[0], out[1]
  return out, None


def all_finite(*trees: Any) -> Array:
  """True when every element of every array leaf of ``trees`` is finite (no NaN, no Inf)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]))


def keep_if(ok: Array, new: Any, old: Any) -> Any:
  """``new`` where the scalar ``ok`` is True, else ``old`` (leaf by leaf, inside a compiled step)."""
  return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


LossFn = Callable[[Any], tuple[Array, tuple[dict, Any]]]


def update(
  nets: NetState | tuple[NetState, ...],
  loss_fn: LossFn,
  *,
  name: str,
  skip_nonfinite: bool = False,
) -> tuple[Any, dict, Metrics]:
  """One optimiser step of ``nets`` on the scalar ``loss_fn(params)``.

  With ``g = grad_params loss_fn(params)``, every network's optimiser (optax)
  turns its part of ``g`` into an update ``u`` and ``params <- params + u``.

  Args:
    nets: one `NetState`, or a tuple of them trained jointly on one objective
      (then ``params``, the gradients and the statistics are tuples in the same
      order).
    loss_fn: ``params -> (loss, (aux, batch_stats))``: the scalar to minimise,
      a dict of extra metrics, and the BatchNorm statistics after its network
      calls (thread them with `apply_network`'s ``batch_stats``; return
      ``net.batch_stats`` unchanged when the objective should not update them).
    name: prefix of the metrics (``"d"``, ``"g"``).
    skip_nonfinite: when the loss or a gradient is NaN/Inf, keep the networks
      as they were (parameters, optimiser state, statistics, step count).

  Returns:
    ``(new_nets, aux, metrics)`` with ``metrics`` = ``{name}_loss``,
    ``{name}_grad_norm`` (global L2 norm of the gradients), ``{name}_param_norm``
    (of the new parameters) and ``{name}_finite``.
  """
  joint = isinstance(nets, tuple)
  group = nets if joint else (nets,)
  params = tuple(n.params for n in group) if joint else nets.params
  (loss, (aux, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  if not joint:
    grads_by_net, stats_by_net = (grads,), (stats,)
  else:
    grads_by_net, stats_by_net = grads, stats
  new = tuple(n.apply_gradients(grads=g, batch_stats=s) for n, g, s in zip(group, grads_by_net, stats_by_net))
  finite = all_finite(loss, grads)
  if skip_nonfinite:
    new = keep_if(finite, new, group)
  new_params = tuple(n.params for n in new) if joint else new[0].params
  metrics = {
    f"{name}_loss": loss,
    f"{name}_grad_norm": optax.tree.norm(grads),
    f"{name}_param_norm": optax.tree.norm(new_params),
    f"{name}_finite": finite,
  }
  return (new if joint else new[0]), aux, metrics


def ema_decay_at(decay: float, num_updates: Array) -> Array:
  """min(decay, (1 + n) / (10 + n)) after n generator updates: the average warms up instead of remembering init."""
  n = num_updates.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def ema_update(ema_params: Any, params: Any, decay: float, num_updates: Array) -> Any:
  """ema <- d ema + (1 - d) params with d = `ema_decay_at` (``optax.incremental_update``)."""
  d = ema_decay_at(decay, num_updates)
  return optax.incremental_update(params, ema_params, 1.0 - d)
