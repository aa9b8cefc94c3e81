"""The per-iteration step, with its updates as parameters.

`alternating_step(state, batch, d_update=..., g_update=..., n_critic=k,
n_gen=m)` is Goodfellow et al.'s Algorithm 1 as one pure function: ``k``
discriminator updates (each on its own real batch: the batch leaves carry a
leading ``k`` axis), then ``m`` generator updates; `repeat_update` inlines
repeated updates up to ``unroll`` of them and scans beyond (XLA:CPU runs
convolutions in a loop body far slower than inlined ones). Any
update of the form ``update(state, batch, key) -> (state, metrics)`` plugs in
-- `jaxgan.families.gan.d_update` / ``g_update``, or a researcher's own
(two-timescale, unrolled, consistency-regularised ...). The iteration's key is
``fold_in(state.key, state.step)``, split into one key per update, so every
iteration draws fresh randomness and the same (seed, step) gives the same bits.

The metrics contract (what `jaxgan.trainer.fit` reads): a step returns a flat
dict of scalars with a boolean ``finite`` -- True when every update of the
iteration had a finite loss and finite gradients. An update reports its own
``{name}_finite`` flags (`jaxgan.update.update` does); `alternating_step`
reduces every metric over the scanned updates (numbers by their mean, flags
by ``all``) and sets ``finite`` to the conjunction of the ``*_finite`` flags.
An update that reports none is an error, never a silently disabled NaN guard.

`AdversarialConfig` holds what every family's config has: the loss (a name
or a `jaxgan.losses.GANLoss`), label smoothing, the discriminator penalties
(`jaxgan.regularizers.Penalty`) and the NaN skip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxgan import losses, regularizers
from jaxgan.errors import ConfigError

Array = jax.Array
"""@private The array type of the annotations (`jax.Array`), kept out of the API reference."""
Batch = dict[str, Array]
Metrics = dict[str, Array]
Update = Callable[[Any, Batch, Array], tuple[Any, Metrics]]


@dataclasses.dataclass(frozen=True)
class AdversarialConfig:
  """The adversarial settings every family's ``Config`` extends.

  Attributes:
    loss: a name in `jaxgan.losses.LOSSES` (see `jaxgan.losses.register_loss`)
      or a `jaxgan.losses.GANLoss` value.
    real_label: target for real samples of the named losses that have one;
      0.9 is one-sided label smoothing (Salimans et al., 2016).
    penalties: `jaxgan.regularizers.Penalty` terms added to the
      discriminator's loss, in order (e.g. ``(regularizers.wgan_gp(10.0),)``).
    skip_nonfinite: drop (rather than apply) an update whose loss or gradients
      are NaN/Inf.
  """

  loss: str | losses.GANLoss = "non_saturating"
  real_label: float = 1.0
  penalties: tuple[regularizers.Penalty, ...] = ()
  skip_nonfinite: bool = False

  def __post_init__(self):
    object.__setattr__(self, "penalties", tuple(self.penalties))
    if not 0.0 < self.real_label <= 1.0:
      raise ConfigError(f"real_label must be in (0, 1], got {self.real_label}")
    if any(not isinstance(p, regularizers.Penalty) for p in self.penalties):
      raise ConfigError("penalties must be jaxgan.regularizers.Penalty values (e.g. regularizers.wgan_gp(10.0))")
    self.gan_loss()

  def gan_loss(self) -> losses.GANLoss:
    """The `GANLoss` the updates call."""
    return losses.get_loss(self.loss, real_label=self.real_label)


def reduce_metrics(metrics: Metrics) -> Metrics:
  """Metrics stacked over scanned updates -> one value each: flags by ``all``, numbers by the mean."""
  return {name: jnp.all(v) if v.dtype == jnp.bool_ else jnp.mean(v) for name, v in metrics.items()}


def finite_flag(metrics: Metrics) -> Array:
  """The conjunction of every ``*_finite`` flag in ``metrics`` (a `ConfigError` when there is none)."""
  flags = [v for name, v in metrics.items() if name.endswith("_finite")]
  if not flags:
    raise ConfigError(
      f"the updates report no '<name>_finite' flag (metrics: {', '.join(sorted(metrics))}): build them on "
      "jaxgan.update.update, or add one (jaxgan.update.all_finite of the loss and gradients)"
    )
  out = flags[0]
  for flag in flags[1:]:
    out = out & flag
  return out


# XLA:CPU runs convolutions inside a while loop (what `jax.lax.scan` lowers to) up to ~50x slower than the same
# convolutions inlined: an SNGAN-ResNet iteration at 32 px took 21 s scanned and 0.44 s inlined on a 2-core CPU
# (benchmarks/README.md). Repeated updates are therefore inlined, up to this many.
UNROLL_UP_TO = 8


def repeat_update(body: Callable, state: Any, xs: Any, n: int, unroll: bool | int = UNROLL_UP_TO) -> tuple[Any, Any]:
  """``jax.lax.scan(body, state, xs)`` over ``n`` steps, with the steps inlined when ``n <= unroll`` (True:
  always, False: never): the same updates in the same order, each metric stacked on a leading axis of size n."""
  limit = n if unroll is True else int(unroll)
  if n > limit:
    return jax.lax.scan(body, state, xs)
  outs = []
  for i in range(n):
    state, out = body(state, jax.tree.map(lambda x, i=i: x[i], xs))
    outs.append(out)
  return state, jax.tree.map(lambda *v: jnp.stack(v), *outs)


def alternating_step(
  state: Any,
  batch: Batch,
  *,
  d_update: Update,
  g_update: Update,
  n_critic: int = 1,
  n_gen: int = 1,
  unroll: bool | int = UNROLL_UP_TO,
) -> tuple[Any, Metrics]:
  """One iteration: ``n_critic`` discriminator updates, then ``n_gen`` generator updates (`repeat_update`:
  inlined up to ``unroll`` updates, a `jax.lax.scan` beyond).

  Args:
    state: any state pytree with an int32 ``step`` and a base ``key``.
    batch: leaves with a leading ``n_critic`` axis; discriminator update i sees
      ``batch[i]``, every generator update ``batch[0]``.
    d_update, g_update: ``(state, batch, key) -> (state, metrics)``.
    n_critic, n_gen: updates per iteration (k and 1 in Algorithm 1).

  Returns:
    ``(state with step + 1, metrics)``: every update's metrics reduced over
    the iteration, plus ``finite`` (see the module docstring).
  """
  key = jax.random.fold_in(state.key, state.step)
  d_key, g_key = jax.random.split(key)
  d_keys = jax.random.split(d_key, n_critic)
  g_keys = jax.random.split(g_key, n_gen)

  def d_body(carry, xs):
    sub_batch, sub_key = xs
    return d_update(carry, sub_batch, sub_key)

  state, d_metrics = repeat_update(d_body, state, (batch, d_keys), n_critic, unroll)
  g_batch = jax.tree.map(lambda x: x[0], batch)

  def g_body(carry, sub_key):
    return g_update(carry, g_batch, sub_key)

  state, g_metrics = repeat_update(g_body, state, g_keys, n_gen, unroll)
  metrics = reduce_metrics({**d_metrics, **g_metrics})
  metrics["finite"] = finite_flag(metrics)
  return state.replace(step=state.step + 1), metrics
