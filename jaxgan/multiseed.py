"""Many seeds in one compiled program: ``jax.vmap`` over K independent GAN runs.

What lives here:

* :func:`stack_states` / :func:`unstack_state` / :func:`create_multiseed_state`
  -- K `GANState`s (one per seed) stacked leaf by leaf into one state whose
  every array has a leading seed axis of size K, except the iteration counter
  ``step``: the K runs advance together, so it stays one scalar and
  `jaxgan.trainer.fit` (resume, logging, checkpoint cadence) and
  `jaxgan.checkpoint` treat a stacked state like any other.
* :func:`seed_axes` -- the vmap axes of a stacked state (0 on every leaf, None
  on ``step``): `vmap_seeds` maps any step ``(state, batch) -> (state,
  metrics)`` over them, and `jaxgan.parallel.compile_step(step, seeds=True)`
  jits the result. Run k of the vmapped program computes exactly what the
  single-seed step computes on state k: each state carries its own base key,
  so iteration t of seed k uses ``fold_in(key_k, t)`` as in a single-seed run.
* :class:`StackedIterator` -- K data iterators (one per seed) yielding batches
  stacked on a leading seed axis, with ``get_state`` / ``set_state`` for
  `jaxgan.trainer.fit`'s resume.
* :func:`flatten_seed_metrics` -- per-seed metrics as scalars (``d_loss`` is the
  mean over seeds, ``d_loss/seed3`` one seed's value, ``finite`` all seeds'), the
  shape `jaxgan.trainer.fit` logs.

Why: a small GAN (the 2-D mixtures, DCGAN at 32 px) leaves an accelerator
mostly idle; vmapping K seeds turns K small matmuls into one batched matmul,
so K runs cost far less than K times one run, and seed-to-seed variance (the
quantity GAN papers should report, Lucic et al., 2018, "Are GANs Created
Equal?") comes for the price of about one run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxgan.errors import ConfigError
from jaxgan.state import GANState, create_gan_state

__all__ = [
  "seed_axes",
  "vmap_seeds",
  "stack_states",
  "unstack_state",
  "num_seeds",
  "create_multiseed_state",
  "flatten_seed_metrics",
  "StackedIterator",
]


def seed_axes(state: Any) -> Any:
  """The vmap axes of a stacked ``state``: 0 on every leaf but the shared iteration counter ``step`` (None).

  ``state`` is any state pytree with a ``step`` field (a `GANState`, a
  CycleGAN state, a researcher's own).
  """
  return jax.tree.map(lambda _: 0, state.replace(step=None)).replace(step=None)


def vmap_seeds(step_fn: Callable, *, shared_batch: bool = False, flat_metrics: bool = True) -> Callable:
  """``jax.vmap(step_fn)`` over the seed axis of a stacked state.

  Args:
    step_fn: ``(state, batch) -> (state, metrics)`` for one seed.
    shared_batch: False: the batch has a leading seed axis, each run sees its
      own data stream (independent runs). True: one batch is fed to every
      seed (e.g. for timing).
    flat_metrics: scalars (`flatten_seed_metrics`, what `jaxgan.trainer.fit`
      logs) instead of (K,) arrays.
  """

  def fn(state, batch):
    axes = seed_axes(state)
    batched = jax.vmap(step_fn, in_axes=(axes, None if shared_batch else 0), out_axes=(axes, 0))
    state, metrics = batched(state, batch)
    return state, (flatten_seed_metrics(metrics) if flat_metrics else metrics)

  return fn


def stack_states(states: Sequence[GANState]) -> GANState:
  """Stacks K `GANState`s of identical structure: a leading axis K on every leaf but ``step``.

  The static parts (modules' ``apply_fn``, optax transformations) must be the
  same objects or compare equal: build the K states with the same modules and
  optimisers. The states must be at the same iteration.
  """
  if not states:
    raise ConfigError("stack_states needs at least one state")
  structures = {jax.tree.structure(s) for s in states}
  if len(structures) != 1:
    raise ConfigError("the states to stack differ in structure: build them with the same modules, optimisers and flags")
  counts = {int(s.step) for s in states}
  if len(counts) != 1:
    raise ConfigError(f"the states to stack are at different iterations {sorted(counts)}")
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[s.replace(step=None) for s in states])
  return stacked.replace(step=states[0].step)


def unstack_state(state: GANState, index: int) -> GANState:
  """Run ``index`` of a stacked state (for sampling, evaluation, saving one seed)."""
  return jax.tree.map(lambda x: x[index], state.replace(step=None)).replace(step=state.step)


def num_seeds(state: GANState) -> int:
  """K, the size of the leading seed axis of a stacked state."""
  return int(state.key.shape[0])


def create_multiseed_state(seeds: Sequence[int], **create_kwargs) -> GANState:
  """K `create_gan_state(seed=s, **create_kwargs)` states, stacked.

  State k is bit-identical to the one a single-seed run with ``seeds[k]``
  starts from (same initial parameters, same base key).
  """
  if len(set(seeds)) != len(seeds):
    raise ConfigError(f"seeds must be distinct, got {list(seeds)}")
  return stack_states([create_gan_state(seed=int(s), **create_kwargs) for s in seeds])


def flatten_seed_metrics(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """(K,)-shaped metrics -> scalars: the mean over seeds and one entry per seed.

  Boolean flags are reduced with ``all`` (``finite`` is True when every seed's
  update was finite), numbers with the mean; ``name/seed{k}`` keeps seed k.
  """
  out = {}
  for name, value in metrics.items():
    if value.dtype == jnp.bool_:
      out[name] = jnp.all(value)
      continue
    out[name] = jnp.mean(value)
    for k in range(value.shape[0]):
      out[f"{name}/seed{k}"] = value[k]
  return out


class StackedIterator:
  """Batches of K iterators stacked on a new leading seed axis.

  ``get_state`` / ``set_state`` carry the K positions, so `jaxgan.trainer.fit`
  resumes every seed's data stream where it stopped.
  """

  def __init__(self, iterators: Sequence[Iterator[dict]]):
    if not iterators:
      raise ConfigError("StackedIterator needs at least one iterator")
    self.iterators = list(iterators)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, jax.Array]:
    batches = [next(it) for it in self.iterators]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *batches)

  def get_state(self) -> dict:
    return {"seeds": [it.get_state() for it in self.iterators]}

  def set_state(self, state: dict) -> None:
    if len(state["seeds"]) != len(self.iterators):
      raise ConfigError(
        f"the data state holds {len(state['seeds'])} seeds, this run has "
        f"{len(self.iterators)}: resume with the same --num_seeds"
      )
    for it, s in zip(self.iterators, state["seeds"]):
      it.set_state(s)
