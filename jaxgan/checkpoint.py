"""Crash-safe checkpoints with orbax `CheckpointManager`.

Each checkpoint step holds two items:

* ``state``: the whole `GANState` pytree (both networks' params, batch stats and
  optimiser states, EMA params, base key, step, extra arrays);
* ``meta``: JSON with the input pipeline position (one per process in a
  multi-process run), the run's resolved flags, a model signature (the
  experiment name plus the shapes of every parameter) and a SHA-256 digest of
  the state's bytes.

Crash safety, in order of the ways a checkpoint can break:

* a kill while saving: orbax writes each step into ``<step>.orbax-checkpoint-tmp``
  and renames it when complete, so a half-written step is never listed; the
  next run removes the temporary directory;
* a kill while pruning: steps beyond ``max_to_keep`` are first renamed into
  ``checkpoints/.trash`` (one atomic rename) and only then deleted, so a
  partly deleted step is never listed either (the next save empties
  ``.trash``);
* a corrupt or truncated step (a bad disk, a copy that stopped early, a
  flipped bit the storage layer did not catch): restoring checks the digest;
  an unreadable newest step is moved to ``<workdir>/checkpoints_corrupt/`` and
  the previous one is restored, with one warning line. The corrupt step leaves
  the manager's view before the next save, so ``max_to_keep`` pruning counts
  only readable steps and can never delete the last good one. If no step is
  readable nothing is moved and the run stops with one error.

A checkpoint whose model signature differs from the current run's is refused
with one clear error and left untouched.

Testing hook: ``JAXGAN_TEST_SLOW_SAVE_SECONDS=<s>`` makes every save sleep
``s`` seconds right after orbax creates its temporary directory and again just
before it commits, so a test can kill the process inside a write. Never set it
for real runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging as logging_std
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jaxgan.errors import CheckpointError

TRASH_SUBDIR = ".trash"
SLOW_SAVE_ENV = "JAXGAN_TEST_SLOW_SAVE_SECONDS"


def finished_steps(directory: str) -> list[int]:
  """The step directories of ``directory`` that a save finished (no temporary ones), sorted; [] if none."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def model_signature(name: str, state: Any) -> str:
  """``name`` plus a digest of every array's path, shape and dtype in ``state``."""
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  desc = ";".join(f"{jax.tree_util.keystr(p)}:{np.shape(x)}:{_dtype(x)}" for p, x in leaves)
  return f"{name}/{hashlib.sha256(desc.encode()).hexdigest()[:16]}"


def _dtype(x: Any) -> np.dtype:
  return x.dtype if hasattr(x, "dtype") else np.result_type(x)


def host_value(x: Any) -> np.ndarray | None:
  """The full value of a leaf on this host, or None for an array sharded over processes."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if not x.is_fully_replicated:
      return None
    x = x.addressable_data(0)
  return np.asarray(jax.device_get(x))


def state_digest(state: Any) -> str | None:
  """SHA-256 over every leaf's path, dtype, shape and bytes (None if some leaf is
  sharded over processes, so no process sees its whole value)."""
  h = hashlib.sha256()
  for path, x in jax.tree_util.tree_flatten_with_path(state)[0]:
    value = host_value(x)
    if value is None:
      return None
    value = np.ascontiguousarray(value)
    h.update(f"{jax.tree_util.keystr(path)}:{value.dtype.str}:{value.shape};".encode())
    h.update(value.tobytes())
  return h.hexdigest()


def _is_primary() -> bool:
  return jax.process_index() == 0


def _sync(tag: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(tag)


def _allgather_json(obj: Any) -> list[Any]:
  """Every process's JSON-serialisable ``obj``, in process order."""
  if jax.process_count() == 1:
    return [obj]
  from jax.experimental import multihost_utils

  data = np.frombuffer(json.dumps(obj, sort_keys=True).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int32))).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[: data.size] = data
  gathered = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
  return [json.loads(row[:n].tobytes().decode()) for row, n in zip(gathered, sizes)]


class _HeldLibraryErrors(logging_std.Filter):
  """Holds back orbax's ERROR records (with their tracebacks) while one operation runs."""

  def __init__(self):
    super().__init__()
    self.held: list[logging_std.LogRecord] = []

  def filter(self, record: logging_std.LogRecord) -> bool:
    if record.levelno >= logging_std.ERROR and "/orbax/" in record.pathname:
      self.held.append(record)
      return False
    return True


@contextlib.contextmanager
def _orbax_errors_summarised() -> Iterator[None]:
  """Within the block, orbax's own error logs are dropped if the block raises (the
  caller turns the exception into one line) and emitted unchanged if it does not."""
  logger = logging_std.getLogger("absl")
  held = _HeldLibraryErrors()
  logger.addFilter(held)
  try:
    yield
  except BaseException:
    logger.removeFilter(held)
    raise
  logger.removeFilter(held)
  for record in held.held:
    logger.handle(record)


class _DropReadOnlyNotice(logging_std.Filter):
  """Drops orbax's warning that a manager is read-only (it is, on purpose, for every reader)."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    return not ("/orbax/" in record.pathname and "read only" in record.getMessage())


class _DrainingEventLoop(asyncio.SelectorEventLoop):
  """An event loop whose ``close`` first waits for the tasks still pending on it.

  Orbax runs each synchronous save or restore in a fresh event loop and
  closes it as soon as the operation's coroutine returns or raises. When one
  write of a save fails (a full disk) -- or one read of a restore (a
  truncated file) -- the others are still in flight in tensorstore; they
  complete after the loop is closed, and each completion then fails on the
  closed loop ("Event loop is closed", one traceback per write, printed by
  tensorstore's threads). Waiting for those tasks before the loop closes lets
  every pending operation finish on a live loop; their exceptions are
  retrieved here (the operation's own error is what is reported).
  """

  def close(self) -> None:
    if not self.is_running() and not self.is_closed():
      pending = [task for task in asyncio.all_tasks(self) if not task.done()]
      if pending:
        self.run_until_complete(asyncio.wait(pending, timeout=_DRAIN_SECONDS))
      for task in pending:
        if task.done() and not task.cancelled():
          task.exception()  # retrieved: no "Task exception was never retrieved" report
    super().close()


class _DrainingPolicy(asyncio.DefaultEventLoopPolicy):
  def new_event_loop(self) -> asyncio.AbstractEventLoop:
    return _DrainingEventLoop()


_DRAIN_SECONDS = 120.0


@contextlib.contextmanager
def _pending_io_drained() -> Iterator[None]:
  """Within the block, orbax's event loops wait for every pending read or write before they close.

  Only the event loop policy of this process is swapped, and only for the
  block (a synchronous save in the calling thread); the previous policy is
  restored afterwards.
  """
  previous = asyncio.get_event_loop_policy()
  asyncio.set_event_loop_policy(_DrainingPolicy())
  try:
    yield
  finally:
    asyncio.set_event_loop_policy(previous)


class _SlowTemporaryPath(ocp.path.atomicity.AtomicRenameTemporaryPath):
  """Testing only: orbax's atomic-rename directory with sleeps inside the write."""

  async def create(self, *args, **kwargs):
    path = await super().create(*args, **kwargs)
    time.sleep(float(os.environ[SLOW_SAVE_ENV]))
    return path

  async def finalize(self, *args, **kwargs):
    time.sleep(float(os.environ[SLOW_SAVE_ENV]))
    return await super().finalize(*args, **kwargs)


class Checkpointer:
  """A crash-safe policy layer over `ocp.CheckpointManager` for GAN runs.

  Args:
    directory: where the numbered step directories live.
    max_to_keep: readable steps to keep; older ones are pruned after a save.
    corrupt_dir: where unreadable steps are moved (default: ``directory`` +
      ``_corrupt``).
    read_only: only read (e.g. evaluating a run that may still be training):
      the directory is neither created nor cleaned of another process's
      half-written step; `save` is not allowed.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 3, corrupt_dir: str | None = None, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self.corrupt_dir = os.path.abspath(corrupt_dir or self.directory + "_corrupt")
    self._trash = os.path.join(self.directory, TRASH_SUBDIR)
    slow = os.environ.get(SLOW_SAVE_ENV)
    if read_only:
      options = ocp.CheckpointManagerOptions(
        read_only=True,
        create=False,
        max_to_keep=None,
        save_interval_steps=0,
        todelete_subdir=None,
        cleanup_tmp_directories=False,
        enable_async_checkpointing=False,
      )
    else:
      options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=True,
        enable_async_checkpointing=False,
        cleanup_tmp_directories=True,
        todelete_subdir=TRASH_SUBDIR,
        temporary_path_class=_SlowTemporaryPath if slow else None,
      )
    logger = logging_std.getLogger("absl")
    quiet = _DropReadOnlyNotice()
    logger.addFilter(quiet)
    try:
      self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))
    finally:
      logger.removeFilter(quiet)

  def _empty_trash(self) -> None:
    shutil.rmtree(self._trash, ignore_errors=True)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict, data_state: Any = None) -> None:
    """Writes ``state`` and ``meta`` as checkpoint ``step`` (atomic; old steps pruned).

    ``data_state`` is this process's input position; in a multi-process run the
    positions of all processes are gathered into ``meta["data_states"]``
    (``meta["data_state"]`` is process 0's). Raises `CheckpointError` when the
    write fails (e.g. a full disk); the partial step is then removed and every
    older step is left as it was. ``meta`` must hold the run's
    ``model_signature`` (`model_signature`; a restore checks it), and ``step``
    must not be saved already: both are a `CheckpointError` before anything
    is written.
    """
    if "model_signature" not in meta:
      raise CheckpointError(
        "Checkpointer.save needs meta['model_signature'] (jaxgan.checkpoint.model_signature(name, state)): "
        "restoring checks it against the run's model"
      )
    if step in self.all_steps():
      raise CheckpointError(
        f"checkpoint step {step} exists already in {self.directory}: a saved step is never overwritten; "
        f"save another step, or delete it first (Checkpointer.delete({step}))"
      )
    if _is_primary():
      self._empty_trash()  # leftovers of a pruning cut short by a kill
    meta = dict(meta, state_digest=state_digest(state))
    if data_state is not None:
      states = _allgather_json(data_state)
      meta["data_state"] = states[0]
      if len(states) > 1:
        meta["data_states"] = states
    try:
      with _orbax_errors_summarised(), _pending_io_drained():
        self._manager.save(
          step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True
        )
        self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - any failed write becomes one clear error
      self._remove_partial(step)
      reason = _one_line(e)
      if _is_disk_full(e):
        reason = f"no space left on device ({reason})"
      raise CheckpointError(
        f"could not write checkpoint step {step} to {self.directory}: {reason}. Older checkpoints are "
        "untouched; free space or fix the directory and rerun the same command to resume"
      ) from None
    if _is_primary():
      self._empty_trash()

  def _remove_partial(self, step: int) -> None:
    if not _is_primary() or not os.path.isdir(self.directory):
      return
    for name in os.listdir(self.directory):
      if name.startswith(f"{step}.orbax-checkpoint-tmp"):
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def read_meta(self, step: int) -> dict:
    with _orbax_errors_summarised(), _pending_io_drained():
      restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored["meta"])

  def _restore_step(self, step: int, abstract: Any) -> Any:
    with _orbax_errors_summarised(), _pending_io_drained():
      restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return restored["state"]

  def _check_step(self, meta: dict, step: int) -> None:
    """A step directory whose meta names another step was renamed or copied: refuse it, delete nothing."""
    saved = meta.get("step")
    if saved is not None and int(saved) != step:
      raise CheckpointError(
        f"checkpoint directory {os.path.join(self.directory, str(step))} holds step {saved}, not {step} (it was "
        f"renamed or copied): rename it back to {saved} or move it out of {self.directory}; nothing was changed"
      )

  def _check_signature(self, meta: dict, signature: str) -> None:
    if meta.get("model_signature") != signature:
      raise CheckpointError(
        f"{self.directory} holds a checkpoint of a different model "
        f"({meta.get('model_signature')!r}, this run is {signature!r}): "
        "use a fresh --workdir or the flags that wrote it"
      )

  def delete(self, step: int) -> None:
    """Removes checkpoint ``step`` (all processes must call it)."""
    self._manager.delete(step)

  def restore_step(self, step: int, target_state: Any, signature: str) -> tuple[Any, dict]:
    """Restores checkpoint ``step`` exactly (no fallback to another step, nothing is moved).

    The checks of `restore_latest` apply (model signature, state digest); any
    failure, or a step the directory does not hold, is one `CheckpointError`.
    """
    steps = self.all_steps()
    if step not in steps:
      raise CheckpointError(f"no checkpoint step {step} in {self.directory} (it holds steps {steps})")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    try:
      meta = self.read_meta(step)
    except Exception as e:  # noqa: BLE001 - an unreadable step is one clear error
      raise CheckpointError(f"checkpoint step {step} in {self.directory} is unreadable ({_one_line(e)})") from None
    self._check_step(meta, step)
    self._check_signature(meta, signature)
    try:
      state = self._restore_step(step, abstract)
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f"checkpoint step {step} in {self.directory} is unreadable ({_one_line(e)})") from None
    saved_digest = meta.get("state_digest")
    digest = state_digest(state) if saved_digest is not None else None
    if digest is not None and digest != saved_digest:
      raise CheckpointError(
        f"checkpoint step {step} in {self.directory} is corrupt: its state bytes do not "
        "match the digest saved with them"
      )
    states = meta.get("data_states")
    if states is not None and len(states) == jax.process_count():
      meta["data_state"] = states[jax.process_index()]
    return state, meta

  def restore_latest(self, target_state: Any, signature: str) -> tuple[Any, dict] | None:
    """Restores the newest readable checkpoint into the structure (and sharding) of ``target_state``.

    A step is readable when its meta and state restore and the state's digest
    matches the one saved with it. Unreadable newer steps are moved to
    ``corrupt_dir`` with one warning line. In a multi-process run
    ``meta["data_state"]`` is replaced by this process's own position.

    Returns (state, meta), or None if the directory holds no checkpoint. Raises
    `CheckpointError` if the newest readable-meta checkpoint belongs to a
    different model, or if no step can be read (nothing is moved then).
    """
    steps = self.all_steps()
    if not steps:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    failures: list[tuple[int, str]] = []
    for step in reversed(steps):
      try:
        meta = self.read_meta(step)
      except Exception as e:  # noqa: BLE001 - any unreadable step falls back to the previous one
        failures.append((step, _one_line(e)))
        continue
      self._check_step(meta, step)
      self._check_signature(meta, signature)
      try:
        state = self._restore_step(step, abstract)
      except Exception as e:  # noqa: BLE001
        failures.append((step, _one_line(e)))
        continue
      saved_digest = meta.get("state_digest")
      if saved_digest is not None:
        digest = state_digest(state)
        if digest is not None and digest != saved_digest:
          failures.append((step, "state bytes do not match the digest saved with them"))
          continue
      if failures:
        self._quarantine(failures, resumed_from=step)
      states = meta.get("data_states")
      if states is not None and len(states) == jax.process_count():
        meta["data_state"] = states[jax.process_index()]
      return state, meta
    first = failures[0]
    raise CheckpointError(
      f"no readable checkpoint in {self.directory}: steps {steps} all failed "
      f"(step {first[0]}: {first[1]}); nothing was moved. Restore a backup or start "
      "with a fresh --workdir"
    )

  def _quarantine(self, failures: list[tuple[int, str]], resumed_from: int) -> None:
    """Moves unreadable steps out of the manager's view (never deletes them)."""
    if _is_primary():
      os.makedirs(self.corrupt_dir, exist_ok=True)
      for step, _ in failures:
        src = os.path.join(self.directory, str(step))
        dst = os.path.join(self.corrupt_dir, str(step))
        n = 0
        while os.path.exists(dst):
          n += 1
          dst = os.path.join(self.corrupt_dir, f"{step}.{n}")
        try:
          os.rename(src, dst)
        except FileNotFoundError:
          pass  # pruned by a concurrent training process while we read it
    _sync("jaxgan_checkpoint_quarantine")
    self._manager.reload()
    names = ", ".join(str(s) for s, _ in failures)
    reasons = "; ".join(f"step {s}: {r}" for s, r in failures)
    logging.warning(
      "unreadable checkpoint step %s in %s (%s): moved to %s, resuming from step %d",
      names,
      self.directory,
      reasons,
      self.corrupt_dir,
      resumed_from,
    )

  def close(self) -> None:
    self._manager.close()


def _one_line(e: BaseException) -> str:
  text = " ".join(f"{type(e).__name__}: {e}".split())
  return text[:300]


def _is_disk_full(e: BaseException) -> bool:
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if "No space left on device" in str(e) or "RESOURCE_EXHAUSTED" in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False
