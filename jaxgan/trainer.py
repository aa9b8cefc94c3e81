"""The training loop: the only impure code in jaxgan.

`fit` drives a compiled ``train_step(state, batch) -> (state, metrics)``:

* mesh: the state is replicated and batches are split over a `jax.make_mesh` mesh;
* input: any iterator of batch dicts with ``get_state`` / ``set_state``;
* checkpoint: restores the newest readable checkpoint in ``workdir`` (state and
  data position) and saves every ``checkpoint_every`` iterations and at the end;
* logging: metrics stay on device until a log step, then one transfer writes
  ``metrics.jsonl`` (and TensorBoard events when tensorboardX is installed) and a
  progress line with it/s and ETA;
* NaN guard: every iteration's ``finite`` flag is checked before each log and
  each save, so a non-finite state is never checkpointed; training stops with
  the step and the network named, the last good checkpoint kept and the
  offending metrics written to ``nonfinite_metrics.json``;
* hooks: ``sample_hook(state, step)`` writes figures every ``sample_every``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np
from absl import logging

from jaxgan import checkpoint as checkpoint_lib
from jaxgan import parallel
from jaxgan.errors import ConfigError, NonFiniteError

METRICS_FILE = "metrics.jsonl"


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  """How long to train and how often to log, checkpoint and draw figures."""

  workdir: str
  num_steps: int
  log_every: int = 100
  checkpoint_every: int = 1000
  sample_every: int = 0
  keep_checkpoints: int = 3

  def __post_init__(self):
    if self.num_steps < 0:
      raise ConfigError(f"num_steps must be >= 0, got {self.num_steps}")
    for name in ("log_every", "checkpoint_every"):
      if getattr(self, name) < 1:
        raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


def prepare_workdir(workdir: str) -> str:
  """Creates ``workdir`` and checks that it is writable (one clear error if not)."""
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, ".write_test")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"workdir {workdir} is not writable ({e.strerror}): choose another --workdir") from None
  return workdir


class _MetricsWriter:
  """Appends JSON lines (and TensorBoard scalars if tensorboardX is importable)."""

  def __init__(self, workdir: str, resume_step: int):
    self.path = os.path.join(workdir, METRICS_FILE)
    if os.path.exists(self.path):
      # Drop records newer than the restored checkpoint: they are about to be recomputed.
      with open(self.path) as f:
        kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(kept)
    self._file = open(self.path, "a")
    try:
      from tensorboardX import SummaryWriter  # optional
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    except ImportError:
      self._tb = None

  def write(self, record: dict) -> None:
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in record.items():
        if k != "step" and isinstance(v, (int, float)):
          self._tb.add_scalar(k, v, record["step"])

  def close(self) -> None:
    self._file.close()
    if self._tb is not None:
      self._tb.close()


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _to_python(value: Any) -> Any:
  value = np.asarray(value)
  if value.dtype == np.bool_:
    return bool(value)
  return float(value)


def fit(*, name: str, state: Any, train_step: Callable, data: Iterator, config: TrainerConfig,
        run_flags: dict | None = None, mesh=None, batch_axis: int = 1,
        sample_hook: Callable[[Any, int], None] | None = None) -> Any:
  """Trains ``state`` to ``config.num_steps`` iterations, resuming from ``workdir``.

  Args:
    name: experiment name; with the parameter shapes it forms the model
      signature that a checkpoint must match.
    state: a freshly initialised state (its structure is the restore target).
    train_step: compiled ``(state, batch) -> (state, metrics)``; it donates state.
    data: iterator of batch dicts with ``get_state()`` / ``set_state(dict)``.
    config: `TrainerConfig`.
    run_flags: the resolved flags, saved with every checkpoint and in flags.json.
    mesh: a data mesh (default: all devices); the state is replicated over it.
    batch_axis: the batch axis of the arrays the iterator yields (1 when they
      carry a leading n_critic axis).
    sample_hook: called as ``sample_hook(state, step)`` every ``sample_every``
      iterations and at the end.

  Returns:
    The final state.
  """
  # ---------------------------------------------------------------- workdir & checkpoint
  workdir = prepare_workdir(config.workdir)
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                             max_to_keep=config.keep_checkpoints)
  signature = checkpoint_lib.model_signature(name, state)
  restored = checkpointer.restore_latest(state, signature)
  if restored is not None:
    state, meta = restored
    data.set_state(meta["data_state"])
    logging.info("resumed %s from step %d in %s", name, int(state.step), checkpointer.directory)
  start_step = int(jax.device_get(state.step))
  last_good_checkpoint = start_step if restored is not None else None
  run_flags = dict(run_flags or {})
  checkpoint_lib.dump_json(os.path.join(workdir, "flags.json"), run_flags)

  # ---------------------------------------------------------------- mesh & sharding
  mesh = mesh if mesh is not None else parallel.make_data_mesh()
  state = parallel.put_replicated(state, mesh)

  def save(step: int, st: Any) -> None:
    nonlocal last_good_checkpoint
    meta = {"model_signature": signature, "step": step, "data_state": data.get_state(), "flags": run_flags}
    checkpointer.save(step, st, meta)
    last_good_checkpoint = step

  # ---------------------------------------------------------------- loop
  writer = _MetricsWriter(workdir, start_step)
  pending: list[tuple[int, dict]] = []
  t_last, step_last = time.perf_counter(), start_step
  t_start = t_last

  def flush(step: int, st: Any) -> None:
    nonlocal pending, t_last, step_last
    if not pending:
      return
    host = jax.device_get([m for _, m in pending])
    steps_done = [s for s, _ in pending]
    pending = []
    for s, m in zip(steps_done, host):
      if not bool(m.get("finite", True)):
        nets = [net for net, key in (("discriminator", "d_finite"), ("generator", "g_finite"))
                if not bool(m.get(key, True))] or ["a network"]
        bad = {k: _to_python(v) for k, v in m.items()}
        checkpoint_lib.dump_json(os.path.join(workdir, "nonfinite_metrics.json"), {"step": s, **bad})
        where = (f"the last good checkpoint is step {last_good_checkpoint} in {checkpointer.directory}"
                 if last_good_checkpoint is not None else "no checkpoint was written")
        raise NonFiniteError(
            f"NaN/Inf in the {' and '.join(nets)} loss or gradients at iteration {s}: training stopped, "
            f"{where}; metrics in nonfinite_metrics.json. Lower the learning rate, or pass "
            "--skip_nonfinite to drop such updates")
    means = {k: float(np.mean([_to_python(m[k]) for m in host])) for k in host[-1] if k not in
             ("finite", "d_finite", "g_finite")}
    now = time.perf_counter()
    rate = (step - step_last) / max(now - t_last, 1e-9)
    eta = (config.num_steps - step) / max(rate, 1e-9)
    record = {"step": step, **means, "steps_per_sec": rate, "elapsed_sec": now - t_start}
    writer.write(record)
    shown = " ".join(f"{k} {means[k]:.4g}" for k in ("d_loss", "g_loss") if k in means)
    logging.info("%s step %d/%d | %.1f it/s | ETA %s | %s", name, step, config.num_steps, rate,
                 _format_duration(eta), shown)
    t_last, step_last = now, step

  step = start_step
  try:
    while step < config.num_steps:
      batch = parallel.put_batch(next(data), mesh, batch_axis)
      state, metrics = train_step(state, batch)
      step += 1
      pending.append((step, metrics))
      at_end = step == config.num_steps
      if step % config.log_every == 0 or step % config.checkpoint_every == 0 or at_end:
        flush(step, state)
      if step % config.checkpoint_every == 0 or at_end:
        save(step, state)
      if sample_hook is not None and ((config.sample_every and step % config.sample_every == 0) or at_end):
        sample_hook(state, step)
    if step == start_step and sample_hook is not None and restored is not None:
      sample_hook(state, step)
  finally:
    writer.close()
    checkpointer.close()
  return state
