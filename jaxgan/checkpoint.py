"""Checkpoints with orbax `CheckpointManager`.

Each checkpoint step holds two items:

* ``state``: the whole `GANState` pytree (both networks' params, batch stats and
  optimiser states, EMA params, base key, step, extra arrays);
* ``meta``: JSON with the input pipeline position, the run's resolved flags and
  a model signature (the experiment name plus the shapes of every parameter).

Orbax writes each step to a temporary directory and renames it when complete,
so a crash never leaves a half-written step that looks finished. On resume the
newest step is restored; if it cannot be read the previous one is tried, and
nothing is deleted. A checkpoint whose model signature differs from the
current run's is refused with one clear error.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging


from jaxgan.errors import CheckpointError


def model_signature(name: str, state: Any) -> str:
  """``name`` plus a digest of every array's path, shape and dtype in ``state``."""
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  desc = ";".join(f"{jax.tree_util.keystr(p)}:{np.shape(x)}:{np.result_type(x)}" for p, x in leaves)
  return f"{name}/{hashlib.sha256(desc.encode()).hexdigest()[:16]}"


class Checkpointer:
  """A thin policy layer over `ocp.CheckpointManager` for GAN runs."""

  def __init__(self, directory: str, *, max_to_keep: int = 3):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False,
                                           cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Writes ``state`` and ``meta`` as checkpoint ``step`` (atomic; old steps pruned)."""
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()

  def read_meta(self, step: int) -> dict:
    restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored["meta"])

  def restore_latest(self, target_state: Any, signature: str) -> tuple[Any, dict] | None:
    """Restores the newest readable checkpoint into the structure of ``target_state``.

    Returns (state, meta), or None if the directory holds no checkpoint. Raises
    `CheckpointError` if the checkpoint belongs to a different model, or if no
    step can be read.
    """
    steps = self.all_steps()
    if not steps:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    failures = []
    for step in reversed(steps):
      try:
        meta = self.read_meta(step)
      except Exception as e:  # noqa: BLE001 - any unreadable step falls back to the previous one
        failures.append(step)
        logging.warning("checkpoint step %d in %s is unreadable (%s); trying the previous one",
                        step, self.directory, _one_line(e))
        continue
      if meta.get("model_signature") != signature:
        raise CheckpointError(
            f"{self.directory} holds a checkpoint of a different model "
            f"({meta.get('model_signature')!r}, this run is {signature!r}): "
            "use a fresh --workdir or the flags that wrote it")
      try:
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
      except Exception as e:  # noqa: BLE001
        failures.append(step)
        logging.warning("checkpoint step %d in %s is unreadable (%s); trying the previous one",
                        step, self.directory, _one_line(e))
        continue
      if failures:
        logging.warning("resumed from step %d; unreadable newer steps %s were left in place", step, failures)
      return restored["state"], meta
    raise CheckpointError(f"no readable checkpoint in {self.directory} (steps {steps} all failed): "
                          "restore a backup or start with a fresh --workdir")

  def close(self) -> None:
    self._manager.close()


def _one_line(e: Exception) -> str:
  text = f"{type(e).__name__}: {e}"
  return text.splitlines()[0][:300] if text else type(e).__name__


def dump_json(path: str, obj: Any) -> None:
  """Writes JSON atomically (temp file + rename)."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=str)
  os.replace(tmp, path)
