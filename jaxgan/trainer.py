"""The training loop: the only impure code in jaxgan.

`fit` drives a compiled ``train_step(state, batch) -> (state, metrics)`` (any
step; `jaxgan.parallel.compile_step` makes one, and `fit` takes its mesh and
batch axis from it). The metrics contract (`jaxgan.steps`): a flat dict of
scalars with a boolean ``finite``, True when every update of the iteration had
a finite loss and finite gradients; ``{name}_finite`` flags name the network
at fault (``d``: the discriminator, ``g``: the generator). A step whose
metrics have no ``finite`` is refused at its first iteration
(`check_metrics`), never run with the NaN guard off.

* mesh: the state is replicated and batches are split over a `jax.make_mesh` mesh;
* input: any iterator of batch dicts with ``get_state`` / ``set_state``;
* checkpoint: restores the newest readable checkpoint in ``workdir`` (state and
  data position; corrupt newer steps are moved to ``checkpoints_corrupt/``, see
  `jaxgan.checkpoint`) and saves every ``checkpoint_every`` iterations and at
  the end. A run killed at any moment (SIGKILL included) and restarted with
  the same command ends with the same bits as an uninterrupted run;
* logging: metrics stay on device until a log step, then one transfer writes
  ``metrics.jsonl`` and a progress line with it/s and ETA. On resume the
  records after the restored step (and a line cut short by a kill) are
  dropped with an atomic rewrite. ``learning_rates`` ({name: step -> rate},
  e.g. from `jaxgan.optimizers.rate_at_iteration`) adds each network's rate at
  the logged step to the record;
* progress: ``steps_per_sec`` is the steady training rate of this process,
  measured from the end of its first iteration (the one that compiles: the
  trainer waits for its metrics once) and without the time spent in
  evaluation, checkpoint saves, sample hooks and writing log lines (after the
  metrics transfer, which waits for the iterations). ETA = iterations left /
  that rate + for each of evaluation, save, hook and log line the mean
  duration so far times the number still to come (the final ones included;
  nothing for a kind that has not run yet). ``elapsed_sec`` is the wall time
  since the loop began (after restoring). The first log line of a process,
  when it is its first iteration, has no ``steps_per_sec``;
* TensorBoard (``config.tensorboard``, on by default): one event file per
  `fit` call in ``<workdir>/tensorboard`` (tensorboardX's protobufs, written
  and flushed by process 0 at each log line): every number of a metrics.jsonl
  record but ``step`` as ``train/<name>`` (losses, ``train/g_lr``,
  ``train/steps_per_sec``...), every number of an eval.jsonl record as
  ``eval/<name>``, and the PNG files a sample hook returns as images
  ``samples/<tag>`` (`sample_image_tag`). A resumed run's file starts with a
  purge marker at the restored step + 1, so TensorBoard hides the earlier
  run's events from the steps that are trained again (the restored step's
  own values stay, as in metrics.jsonl);
* NaN guard: every iteration's ``finite`` flag is checked before each log and
  each save, so a non-finite state is never checkpointed; training stops with
  the step and the network named, the last good checkpoint kept and the
  offending metrics written to ``nonfinite_metrics.json``. With
  ``skip_nonfinite`` the step functions drop such updates instead; the trainer
  then counts them (``skipped_nonfinite`` in metrics.jsonl, one warning per
  log) and stops with one line when more than ``max_skipped_fraction`` of the
  last max(log_every, 10) iterations were dropped (training is then not
  progressing);
* storage: a full disk or an unwritable file ends the run with one
  `StorageError` / `CheckpointError` line; older checkpoints stay readable;
* one writer per workdir: `WorkdirLock`, an exclusive lock on
  ``<workdir>/.jaxgan.lock`` held while `fit` runs; a second run on the same
  workdir stops with one line naming the holder (pid, host) and touches
  nothing. The kernel drops the lock when its process dies, so a killed
  run's lock never blocks the rerun;
* preemption: SIGTERM (what a scheduler sends) and SIGINT (Ctrl-C) finish the
  iteration in flight, save a checkpoint with the data position, flush the
  metrics and end with `Interrupted` (exit code 128 + signal) -- rerunning
  the same command resumes bit for bit. In a multi-process run SIGTERM goes
  through JAX's preemption synchronisation (every process saves the same
  step; `jax.experimental.multihost_utils.reached_preemption_sync_point`) and a
  Ctrl-C on one process is shared with the others at the next log step. A
  second signal stops at once, without saving;
* resume checks the run: the flags saved with the restored checkpoint and the
  new ones may differ only in ``neutral_flags`` (those that cannot change the
  trajectory: length, cadences, kept count, directories, devices). Any other
  change is one error listing each flag with its old and new value, unless
  ``allow_flag_changes``: then it is recorded in ``flags_history.jsonl`` and
  ``flags.json`` is rewritten, so it always describes the checkpoints;
* multi-process: every process runs `fit` (collectives and orbax saves need all
  of them); only process 0 writes metrics, flags.json and JSON reports;
* hooks: ``sample_hook(state, step)`` writes figures every ``sample_every``
  and at the end; it may return the path (or a list of paths) of the PNG
  files it wrote, which go to TensorBoard;
* evaluation: ``eval_fn(state, step) -> {name: number}`` runs every
  ``eval_every`` iterations and at the end, after the NaN check and before that
  step's checkpoint; each result is one line of ``eval.jsonl`` (dropped on
  resume like the metrics after the restored step). With ``best_metric`` the
  state with the best value so far (strictly lower for ``best_mode="min"``,
  higher for ``"max"``; NaN never wins) is also saved to
  ``checkpoints_best/`` (its own `Checkpointer`, one step kept, the value in
  its meta). The rolling ``checkpoints/`` used for resuming are untouched, and
  a resumed run reads the best value back from that meta, so it keeps
  comparing against it. ``eval_fn`` must not draw from the training key
  stream (use fixed keys of its own): training then resumes bit for bit with
  or without evaluation.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxgan import checkpoint as checkpoint_lib
from jaxgan import parallel, storage
from jaxgan.errors import CheckpointError, ConfigError, Interrupted, NonFiniteError, StorageError

METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
BEST_DIR = "checkpoints_best"
NONFINITE_FILE = "nonfinite_metrics.json"
CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "checkpoints_corrupt"
FLAGS_FILE = "flags.json"
FLAGS_HISTORY_FILE = "flags_history.jsonl"
LOCK_FILE = ".jaxgan.lock"
TENSORBOARD_DIR = "tensorboard"

# Flags that cannot change the training trajectory: a resumed run may change them freely.
NEUTRAL_FLAGS = frozenset({
  "num_steps", "log_every", "checkpoint_every", "sample_every", "eval_every", "keep_checkpoints",
  "workdir", "data_dir", "num_devices", "coordinator_address", "num_processes", "process_id", "distributed",
  "allow_flag_changes", "tensorboard",
})  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  """How long to train and how often to log, checkpoint, draw figures and evaluate (``eval_every``, 0: only
  at the end, when `fit` is given an ``eval_fn``); ``tensorboard``: write TensorBoard event files too."""

  workdir: str
  num_steps: int
  log_every: int = 100
  checkpoint_every: int = 1000
  sample_every: int = 0
  keep_checkpoints: int = 3
  skip_nonfinite: bool = False
  eval_every: int = 0
  max_skipped_fraction: float = 0.5
  allow_flag_changes: bool = False
  tensorboard: bool = True

  def __post_init__(self):
    if self.num_steps < 0:
      raise ConfigError(f"num_steps must be >= 0, got {self.num_steps}")
    if self.eval_every < 0:
      raise ConfigError(f"eval_every must be >= 0 (0: only at the end), got {self.eval_every}")
    if not 0.0 <= self.max_skipped_fraction <= 1.0:
      raise ConfigError(f"max_skipped_fraction must be in [0, 1], got {self.max_skipped_fraction}")
    for name in ("log_every", "checkpoint_every"):
      if getattr(self, name) < 1:
        raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


# ---------------------------------------------------------------------------- one writer per workdir


class WorkdirLock:
  """An exclusive ``flock`` on ``<workdir>/.jaxgan.lock`` for as long as a run writes there.

  `acquire` either takes the lock (and writes the holder's pid, host and
  start time into the file) or raises `CheckpointError` naming the holder,
  having changed nothing. `release` puts the file's previous bytes back, so a
  run that stops on bad input leaves the workdir as it found it. The kernel
  releases the lock when the holding process ends, however it ends, so a
  stale lock file never blocks a rerun.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
    self._fd: int | None = None
    self._previous = b""

  def acquire(self) -> WorkdirLock:
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = _read_holder(fd)
      os.close(fd)
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      raise CheckpointError(
        f"{os.path.dirname(self.path)} is in use by another run ({holder}): two runs on one workdir would "
        "interleave their metrics and delete each other's checkpoints; wait for it to finish or stop it, or "
        "choose another --workdir"
      ) from None
    self._previous = os.pread(fd, 1 << 16, 0)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
      self._write(fd, json.dumps(info).encode())
    except OSError:  # a full disk: put the old bytes back, let go, and let the caller report it
      try:
        self._write(fd, self._previous)
      except OSError:
        pass
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)
      raise
    self._fd = fd
    return self

  @staticmethod
  def _write(fd: int, data: bytes) -> None:
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))

  def release(self) -> None:
    if self._fd is not None:
      try:
        self._write(self._fd, self._previous)
      except OSError:
        pass  # a full disk: the lock file keeps this run's pid, which is harmless
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def _read_holder(fd: int) -> str:
  try:
    info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    return f"pid {info['pid']} on {info['host']}, started {info['started']}"
  except (OSError, ValueError, KeyError):
    return "its pid is not recorded yet"


# ---------------------------------------------------------------------------- preemption and interrupts


class _StopRequests:
  """SIGTERM / SIGINT while `fit` runs: the signal is recorded, and the loop saves and stops.

  Installed only in the main thread and only while `fit` runs (the previous
  handlers are put back). In a multi-process run SIGTERM is left to JAX's
  preemption notifier and read through `reached_preemption_sync_point`, so
  every process stops at the same step; a Ctrl-C is shared at log steps.
  """

  def __init__(self, name: str):
    self.name, self.signum, self._previous = name, None, {}
    self._multi = jax.process_count() > 1

  def __enter__(self) -> _StopRequests:
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT,) if self._multi else (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def _handle(self, signum, frame) -> None:
    del frame
    name = signal.Signals(signum).name
    if self.signum is not None:
      raise Interrupted(f"{name} again: {self.name} stopped at once, without saving this step", 128 + signum)
    self.signum = signum
    logging.warning("%s: %s received, saving a checkpoint after the current iteration", self.name, name)

  def requested(self, step: int, log_step: bool) -> int | None:
    """The signal to stop for at ``step`` (the same on every process), or None."""
    if not self._multi:
      return self.signum
    from jax.experimental import multihost_utils

    try:
      if multihost_utils.reached_preemption_sync_point(step):
        return signal.SIGTERM
    except RuntimeError:  # the preemption service is off
      pass
    if not log_step:
      return None
    flags = np.asarray(multihost_utils.process_allgather(np.int32(self.signum or 0)))
    return int(flags.max()) or None


# ---------------------------------------------------------------------------- resuming with other flags


def _normalised(flags: dict) -> dict:
  return json.loads(json.dumps(flags, sort_keys=True, default=str))


# Flags added after runs were saved, with the value that reproduces what those runs did: a saved run whose
# flags lack one is taken to have had this value (so it resumes without a spurious "changed flag").
ADDED_FLAG_DEFAULTS = {
  "spectral_norm": False, "diffaugment": [], "dragan_weight": 0.0, "bcr_weight": 0.0, "lecam_weight": 0.0,
  "lecam_decay": 0.99, "r1_every": 1, "ac_weight": 1.0, "gp_weight": 0.0, "r1_weight": 0.0,
  "d_batchnorm": True,
}  # fmt: skip


def changed_flags(saved: dict, current: dict, neutral: Collection[str] = NEUTRAL_FLAGS) -> dict[str, tuple]:
  """{flag: (old, new)} for every flag outside ``neutral`` that differs between two runs' flags (a flag of
  `ADDED_FLAG_DEFAULTS` missing from ``saved`` counts as its default there)."""
  added = {k: v for k, v in ADDED_FLAG_DEFAULTS.items() if k in current and k not in saved}
  saved, current = _normalised({**saved, **added}), _normalised(current)
  return {
    k: (saved.get(k), current.get(k))
    for k in sorted(set(saved) | set(current))
    if k not in neutral and saved.get(k) != current.get(k)
  }


def _check_resumed_flags(
  workdir: str, step: int, saved: dict | None, current: dict, neutral: Collection[str], allow: bool
) -> None:
  """One `ConfigError` for a resume that would change the trajectory, unless ``allow`` (then recorded)."""
  if saved is None:
    return
  changes = changed_flags(saved, current, neutral)
  if not changes:
    return
  listed = ", ".join(f"--{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())
  if not allow:
    raise ConfigError(
      f"the checkpoint at step {step} in {workdir} was trained with other flags: {listed}. Resuming would change "
      "the run: use a fresh --workdir, or pass --allow_flag_changes to continue with the new values (recorded in "
      f"{FLAGS_HISTORY_FILE})"
    )
  if jax.process_index() == 0:
    record = {
      "step": step,
      "time": time.strftime("%Y-%m-%d %H:%M:%S"),
      "changed": {k: list(v) for k, v in changes.items()},
    }
    with open(os.path.join(workdir, FLAGS_HISTORY_FILE), "a") as f:
      f.write(json.dumps(record) + "\n")
  logging.warning("resuming at step %d with changed flags (recorded in %s): %s", step, FLAGS_HISTORY_FILE, listed)


# ---------------------------------------------------------------------------- the workdir


def prepare_workdir(workdir: str, lock: bool = False) -> str | tuple[str, WorkdirLock]:
  """Creates ``workdir`` and checks that a file can be written there (one clear error if not).

  With ``lock`` it also takes the workdir's `WorkdirLock` (before anything
  else is written) and returns ``(workdir, lock)``. The probe file is removed
  whatever happens, so a failed check leaves the directory as it was.
  """
  workdir = os.path.abspath(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"workdir {workdir} is a file, not a directory: choose another --workdir")
  probe = os.path.join(workdir, f".write_test.{os.getpid()}.{jax.process_index()}")
  held = None
  try:
    os.makedirs(workdir, exist_ok=True)
    held = WorkdirLock(workdir).acquire() if lock else None
    with open(probe, "w") as f:
      f.write("ok")
  except OSError as e:
    if held is not None:
      held.release()
    hint = "free space or choose another --workdir" if e.errno in storage.DISK_FULL else "choose another --workdir"
    raise ConfigError(f"workdir {workdir} is not writable ({storage.os_reason(e)}): {hint}") from None
  finally:
    try:
      os.remove(probe)
    except OSError:
      pass
  return (workdir, held) if lock else workdir


class _TensorBoard:
  """The run's TensorBoard event file in ``<workdir>/tensorboard``, written by process 0 only.

  Each `fit` opens a new file (named by time, host and pid, so a rerun never
  overwrites one) that begins, after its header, with the purge marker of
  tensorboardX's ``SummaryWriter(purge_step=resume_step + 1)``: TensorBoard
  then hides the events an earlier run wrote from that step on, which this
  run trains again. The events are tensorboardX's protobufs in TFRecord
  framing, written and flushed in the calling thread at each log line: a full
  disk is an `OSError` there (so one `StorageError` line), never a dead
  background writer that blocks training. Disabled, or on another process,
  every method does nothing.
  """

  def __init__(self, workdir: str, resume_step: int, enabled: bool = True):
    self._file = None
    if not enabled or jax.process_index() != 0:
      return
    try:
      from tensorboardX import summary
      from tensorboardX.proto import event_pb2
      from tensorboardX.record_writer import masked_crc32c
    except ImportError:
      raise ConfigError(
        "TensorBoard logging needs tensorboardX (a jaxgan dependency): pip install 'tensorboardX>=2.6', or turn "
        "it off (TrainerConfig(tensorboard=False))"
      ) from None
    self._summary, self._pb, self._crc = summary, event_pb2, masked_crc32c
    directory = os.path.join(workdir, TENSORBOARD_DIR)
    os.makedirs(directory, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{time.time_ns()}.{os.getpid()}"
    self.path = os.path.join(directory, name)
    self._file = open(self.path, "xb")
    version = "brain.Event:2"
    self._write(event_pb2.Event(wall_time=time.time(), file_version=version))
    self._write(event_pb2.Event(wall_time=time.time(), step=resume_step + 1, file_version=version))
    start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
    self._write(event_pb2.Event(wall_time=time.time(), step=resume_step + 1, session_log=start))
    self._file.flush()

  def _write(self, event: Any) -> None:
    """One TFRecord: length (uint64 LE), its masked CRC-32C, the serialised event, its masked CRC-32C."""
    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    self._file.write(header + struct.pack("<I", self._crc(header)) + data + struct.pack("<I", self._crc(data)))

  def _add(self, summaries: list, step: int) -> None:
    for one in summaries:
      self._write(self._pb.Event(wall_time=time.time(), step=step, summary=one))
    self._file.flush()

  def scalars(self, prefix: str, record: dict) -> None:
    """Every number of ``record`` but ``step`` as ``<prefix>/<name>`` at ``record["step"]``."""
    if self._file is None:
      return
    numbers = {
      k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    self._add([self._summary.scalar(f"{prefix}/{k}", float(v)) for k, v in numbers.items()], record["step"])

  def images(self, paths: list[str], step: int) -> None:
    """Each PNG in ``paths`` as the image `sample_image_tag(path)` at ``step`` (HWC uint8)."""
    if self._file is None or not paths:
      return
    self._add([self._summary.image(sample_image_tag(p), _read_image(p), dataformats="HWC") for p in paths], step)

  def close(self) -> None:
    if self._file is not None:
      try:
        self._file.close()
      except OSError:
        pass  # everything was flushed at the last log line; a failing close must not hide the error in flight
      self._file = None


def flat_numbers(results: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
  """Every number in a nested results dict, named by its path: ``{"ema": {"fid": 3.0}}`` -> ``{"ema/fid": 3.0}``.

  Lists of dicts are indexed (``runs/0/...``); strings, booleans, None and
  other lists are left out.
  """
  out = {}
  for key, value in results.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flat_numbers(value, name + "/"))
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
      for i, item in enumerate(value):
        out.update(flat_numbers(item, f"{name}/{i}/"))
    elif isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
      out[name] = float(value)
  return out


def write_scalars(
  workdir: str, step: int, results: Mapping[str, Any], prefix: str = "eval", enabled: bool = True
) -> None:
  """Appends the numbers of ``results`` (`flat_numbers`) to the run's TensorBoard as ``<prefix>/<name>`` at ``step``.

  For what a script computes after `fit` returns (a final evaluation): one
  more event file in ``<workdir>/tensorboard``, written by process 0 only;
  ``enabled=False`` (``TrainerConfig.tensorboard`` off) writes nothing.
  """
  if not enabled or jax.process_index() != 0:
    return
  try:
    board = _TensorBoard(workdir, int(step), enabled=True)
    try:
      board.scalars(prefix, {**flat_numbers(results), "step": int(step)})
    finally:
      board.close()
  except OSError as e:
    directory = os.path.join(workdir, TENSORBOARD_DIR)
    raise StorageError(
      f"could not write TensorBoard events to {directory} ({storage.os_reason(e)}): free space or fix the directory "
      "and rerun the same command (it resumes and evaluates again)"
    ) from None


_STEP_SUFFIX = re.compile(r"(^|_)(step_?)?\d+$")


def sample_image_tag(path: str | os.PathLike) -> str:
  """The TensorBoard tag of a sample figure: ``samples/`` + its file stem without a step suffix.

  The suffix is a trailing ``_<digits>`` or ``step_<digits>`` (or a stem that
  is only digits); when nothing is left the parent folder's name is used:
  ``samples/class_grid_0000100.png`` -> ``samples/class_grid``,
  ``samples/step_0000100.png`` -> ``samples/samples``, ``grids/grid.png`` ->
  ``samples/grid``. One tag per figure, so TensorBoard shows its steps on one
  slider.
  """
  path = os.fspath(path)
  stem = _STEP_SUFFIX.sub("", os.path.splitext(os.path.basename(path))[0])
  return "samples/" + (stem or os.path.basename(os.path.dirname(os.path.abspath(path))) or "sample")


def _read_image(path: str) -> np.ndarray:
  """An image file as HWC uint8 (RGB, or RGBA when it has transparency)."""
  from PIL import Image

  try:
    with Image.open(path) as image:
      alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
      return np.asarray(image.convert("RGBA" if alpha else "RGB"))
  except (OSError, ValueError) as e:
    raise ConfigError(
      f"sample_hook returned {path}, which is not a readable image ({e}): return the paths of the PNG files it "
      "wrote, or None"
    ) from None


def _hook_paths(returned: Any) -> list[str]:
  """The paths a sample hook returned: None, one path, or a list / tuple of paths."""
  if returned is None:
    return []
  items = list(returned) if isinstance(returned, (list, tuple)) else [returned]
  for item in items:
    if not isinstance(item, (str, os.PathLike)):
      raise ConfigError(
        f"sample_hook returned {type(returned).__name__} {returned!r:.80}: return None, the path of a PNG it "
        "wrote, or a list of such paths"
      )
  return [os.fspath(item) for item in items]


class _MetricsWriter:
  """Appends JSON lines, and their numbers to TensorBoard as ``<prefix>/<name>`` when given a `_TensorBoard`.

  On resume, records after ``resume_step`` and any line cut short by a kill
  are dropped; the rewrite is atomic (temp file + rename). Only process 0
  writes; other processes get a writer that does nothing.
  """

  def __init__(
    self,
    workdir: str,
    resume_step: int,
    filename: str = METRICS_FILE,
    tensorboard: _TensorBoard | None = None,
    prefix: str = "train",
  ):
    self.path = os.path.join(workdir, filename)
    self._file = None
    self._tb, self._prefix = tensorboard, prefix
    if jax.process_index() != 0:
      return
    if os.path.exists(self.path):
      with open(self.path) as f:
        lines = f.readlines()
      kept = [line for line in lines if _record_step(line) is not None and _record_step(line) <= resume_step]
      if kept != lines:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
          f.writelines(kept)
        os.replace(tmp, self.path)
    self._file = open(self.path, "a")

  def write(self, record: dict) -> None:
    if self._file is None:
      return
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._tb is not None:
      self._tb.scalars(self._prefix, record)

  def close(self) -> None:
    if self._file is not None:
      try:
        self._file.close()
      except OSError:
        pass


class _Progress:
  """Training speed and time left, measured from the end of this process's first iteration.

  The first iteration compiles the step, so it is left out: `first_iteration_done`
  starts the clock once its metrics are ready. Time inside `paused` (evaluation,
  saves, sample hooks, the host's work on a log line after the metrics arrived)
  is left out of the rate and averaged per kind for the ETA.
  """

  KINDS = ("eval", "save", "hook", "log")

  def __init__(self, config: TrainerConfig, clock: Callable[[], float] = time.perf_counter):
    self._config, self._clock = config, clock
    self.started = clock()
    self._first_step: int | None = None
    self._first_time = 0.0
    self._paused = 0.0  # seconds paused since the first iteration ended
    self._totals = dict.fromkeys(self.KINDS, 0.0)
    self._counts = dict.fromkeys(self.KINDS, 0)

  def first_iteration_done(self, step: int) -> None:
    self._first_step, self._first_time, self._paused = step, self._clock(), 0.0

  @contextlib.contextmanager
  def paused(self, kind: str) -> Iterator[None]:
    began = self._clock()
    try:
      yield
    finally:
      seconds = self._clock() - began
      self._paused += seconds
      self._totals[kind] += seconds
      self._counts[kind] += 1

  def elapsed(self) -> float:
    return self._clock() - self.started

  def rate(self, step: int) -> float | None:
    """Iterations per second of training since the first iteration ended (None until one more is done)."""
    if self._first_step is None or step <= self._first_step:
      return None
    seconds = self._clock() - self._first_time - self._paused
    return (step - self._first_step) / max(seconds, 1e-9)

  def eta(self, step: int, rate: float | None) -> float | None:
    """Seconds left after the log line at ``step`` (its own evaluation, save and hook still to come)."""
    if rate is None:
      return None
    config = self._config
    left = (config.num_steps - step) / max(rate, 1e-9)
    every = {
      "eval": config.eval_every,
      "save": config.checkpoint_every,
      "hook": config.sample_every,
      "log": config.log_every,
    }
    for kind in self.KINDS:
      if self._counts[kind]:
        first = step + 1 if kind == "log" else step  # this log line is being written; the rest of step is to come
        left += self._totals[kind] / self._counts[kind] * events_left(every[kind], first, config.num_steps)
    return left


def events_left(every: int, step: int, num_steps: int) -> int:
  """How many of the steps ``step..num_steps`` have an event that runs every ``every`` steps and at the end.

  Every multiple of ``every`` (none for 0) and ``num_steps`` itself: the
  evaluations, saves or sample hooks still to come at a log line of ``step``.
  """
  if step > num_steps:
    return 0
  multiples = num_steps // every - (step - 1) // every if every else 0
  return multiples + (0 if every and num_steps % every == 0 else 1)


def _record_step(line: str) -> int | None:
  """The step of a complete metrics line, None for a blank or truncated one."""
  if not line.endswith("\n"):
    return None
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return None


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


_NET_NAMES = {"d": "discriminator", "g": "generator"}


def check_metrics(metrics: dict) -> None:
  """The metrics contract of a train step (see `jaxgan.steps`): a boolean ``finite`` flag must be there.

  Raises `ConfigError` otherwise: a step without it would silently disable the NaN guard.
  """
  if "finite" not in metrics:
    raise ConfigError(
      f"the train step's metrics have no 'finite' flag (they have: {', '.join(sorted(metrics)) or 'nothing'}): "
      "return metrics['finite'] = all losses and gradients finite (jaxgan.steps.finite_flag of the updates' "
      "*_finite flags), so the trainer can stop on NaN"
    )
  if np.dtype(getattr(metrics["finite"], "dtype", np.float32)) != np.bool_:
    raise ConfigError(f"metrics['finite'] must be a boolean flag, got dtype {metrics['finite'].dtype}")


def nonfinite_networks(metrics: dict) -> list[str]:
  """The networks whose ``{name}_finite`` flag is False ("discriminator", "generator", or the name itself)."""
  names = [
    _NET_NAMES.get(k[: -len("_finite")], k[: -len("_finite")])
    for k, v in metrics.items()
    if k.endswith("_finite") and not bool(v)
  ]
  return names or ["a network"]


def read_best(workdir: str) -> dict | None:
  """The meta of the best checkpoint in ``workdir/checkpoints_best`` (None when there is none).

  It holds ``step``, ``best_metric``, ``best_mode``, ``best_value``, the
  evaluation record of that step (``eval``) and the run's flags.
  """
  directory = os.path.join(os.path.abspath(workdir), BEST_DIR)
  if not os.path.isdir(directory):
    return None
  checkpointer = checkpoint_lib.Checkpointer(directory, max_to_keep=1, read_only=True)
  try:
    step = checkpointer.latest_step()
    return None if step is None else checkpointer.read_meta(step)
  except Exception as e:  # noqa: BLE001 - an unreadable meta is one clear error
    raise CheckpointError(
      f"the best checkpoint in {directory} is unreadable ({checkpoint_lib._one_line(e)}): "
      f"move {directory} away to start a new best"
    ) from None
  finally:
    checkpointer.close()


def restore_checkpoint(workdir: str, target: Any, signature: str, step: str | int = "latest") -> tuple[Any, dict]:
  """Restores a checkpoint of the run in ``workdir`` into the structure of ``target``.

  ``step`` is ``"latest"`` (the newest readable step of ``checkpoints/``, as a
  resumed run would), ``"best"`` (the one step of ``checkpoints_best/``, see
  `fit`'s ``best_metric``) or an int (that step of ``checkpoints/``). Returns
  (state, meta); raises `CheckpointError` with the reason when there is no
  such checkpoint.
  """
  workdir = os.path.abspath(workdir)
  directory = os.path.join(workdir, BEST_DIR if step == "best" else CHECKPOINT_DIR)
  missing = (
    f"{workdir} has no best checkpoint (nothing in {BEST_DIR}/): train with --eval_every=N "
    "--best_metric=NAME, or choose --step=latest"
    if step == "best"
    else f"no checkpoint in {directory} yet"
  )
  if not os.path.isdir(directory):
    raise CheckpointError(missing)
  # Read-only: the run may still be training (its half-written steps are not ours to clean up).
  checkpointer = checkpoint_lib.Checkpointer(directory, max_to_keep=1 if step == "best" else 1000, read_only=True)
  try:
    if step in ("latest", "best"):
      restored = checkpointer.restore_latest(target, signature)
      if restored is None:
        raise CheckpointError(missing)
      return restored
    return checkpointer.restore_step(int(step), target, signature)
  finally:
    checkpointer.close()


def fit(
  *,
  name: str,
  state: Any,
  train_step: Callable,
  data: Iterator,
  config: TrainerConfig,
  run_flags: dict | None = None,
  mesh=None,
  batch_axis: int | None = None,
  sample_hook: Callable[[Any, int], Any] | None = None,
  eval_fn: Callable[[Any, int], dict] | None = None,
  best_metric: str | None = None,
  best_mode: str = "min",
  neutral_flags: Collection[str] = NEUTRAL_FLAGS,
  learning_rates: Mapping[str, Callable[[int], float]] | None = None,
) -> Any:
  """Trains ``state`` to ``config.num_steps`` iterations, resuming from ``workdir``.

  Args:
    name: experiment name; with the parameter shapes it forms the model
      signature that a checkpoint must match.
    state: a freshly initialised state (its structure is the restore target).
    train_step: compiled ``(state, batch) -> (state, metrics)``; it donates state.
    data: iterator of batch dicts with ``get_state()`` / ``set_state(dict)``.
    config: `TrainerConfig`.
    run_flags: the resolved flags, saved with every checkpoint and in flags.json.
    mesh: a data mesh; the state is replicated over it (default: the mesh of
      a `jaxgan.parallel.CompiledStep`, else all devices).
    batch_axis: the batch axis of the arrays the iterator yields (default: the
      `CompiledStep`'s, else 1; 1 when they
      carry a leading n_critic axis).
    sample_hook: called as ``sample_hook(state, step)`` every ``sample_every``
      iterations and at the end. It returns None, or the path (a str or
      os.PathLike, or a list / tuple of them) of each PNG file it wrote: with
      ``config.tensorboard`` each becomes the TensorBoard image
      `sample_image_tag(path)` at ``step``. Its time is left out of the rate.
    eval_fn: called as ``eval_fn(state, step) -> {name: number}`` every
      ``config.eval_every`` iterations (0: only at the end) and at the end;
      every result is appended to ``eval.jsonl``. It must not change ``state``
      nor use the training keys.
    best_metric: a name in ``eval_fn``'s result: the state where it is best
      is kept in ``checkpoints_best/``.
    best_mode: ``"min"`` (lower is better) or ``"max"``.
    neutral_flags: the ``run_flags`` a resumed run may change without
      ``config.allow_flag_changes`` (see the module docstring).
    learning_rates: {name: function of the iteration count returning that
      network's learning rate}, e.g. ``{"g_lr": ..., "d_lr": ...}`` built with
      `jaxgan.optimizers.rate_at_iteration` (a critic updated n_critic times
      per iteration: ``rate_at_iteration(d_lr, n_critic)``). At each log line
      of step s, ``record[name] = float(fn(s))`` goes into metrics.jsonl and
      TensorBoard (``train/<name>``). Host-side python, called at log lines
      only; a name may not be ``step`` nor a metric of the train step.

  Returns:
    The final state.

  Raises:
    Interrupted: SIGTERM or SIGINT arrived; a checkpoint of the step reached
      was saved first.
  """
  if best_mode not in ("min", "max"):
    raise ConfigError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
  if best_metric is not None and eval_fn is None:
    raise ConfigError(f"best_metric={best_metric!r} needs an eval_fn (and eval_every) to compute it")
  learning_rates = dict(learning_rates or {})
  for key, fn in learning_rates.items():
    if not isinstance(key, str) or not key or key == "step" or not callable(fn):
      raise ConfigError(
        f"learning_rates must map names (not 'step') to functions of the iteration, got {key!r}: {fn!r:.60}"
      )
  skip_nonfinite = config.skip_nonfinite or bool((run_flags or {}).get("skip_nonfinite", False))
  primary = jax.process_index() == 0
  # ---------------------------------------------------------------- workdir, mesh, checkpoint
  # Only process 0 locks: the processes of one multi-process run share the workdir.
  workdir, lock = prepare_workdir(config.workdir, lock=True) if primary else (prepare_workdir(config.workdir), None)
  try:
    with _StopRequests(name) as stops:
      return _fit(
        name, state, train_step, data, config, workdir, run_flags, mesh, batch_axis, sample_hook, eval_fn,
        best_metric, best_mode, neutral_flags, learning_rates, skip_nonfinite, primary, stops,
      )  # fmt: skip
  finally:
    if lock is not None:
      lock.release()


def _fit(
  name, state, train_step, data, config, workdir, run_flags, mesh, batch_axis, sample_hook, eval_fn, best_metric,
  best_mode, neutral_flags, learning_rates, skip_nonfinite, primary, stops,
):  # fmt: skip
  """`fit` with the workdir prepared and locked."""
  if mesh is None:
    mesh = getattr(train_step, "mesh", None) or parallel.make_data_mesh()
  if batch_axis is None:
    batch_axis = getattr(train_step, "batch_axis", 1)
  signature = checkpoint_lib.model_signature(name, state)
  # Placed before restoring, so the checkpoint is read straight into the replicated sharding.
  state = parallel.put_replicated(state, mesh)
  checkpointer = checkpoint_lib.Checkpointer(
    os.path.join(workdir, CHECKPOINT_DIR),
    max_to_keep=config.keep_checkpoints,
    corrupt_dir=os.path.join(workdir, CORRUPT_DIR),
  )
  try:
    restored = checkpointer.restore_latest(state, signature)
  except BaseException:
    checkpointer.close()
    raise
  if restored is not None:
    state, meta = restored
    data.set_state(meta["data_state"])
    logging.info(
      "resumed %s from step %d in %s", name, int(checkpoint_lib.host_value(state.step)), checkpointer.directory
    )
  start_step = int(checkpoint_lib.host_value(state.step))
  last_good_checkpoint = start_step if restored is not None else None
  run_flags = dict(run_flags or {})
  if restored is not None:
    try:
      _check_resumed_flags(
        workdir, start_step, restored[1].get("flags"), run_flags, neutral_flags, config.allow_flag_changes
      )
    except BaseException:
      checkpointer.close()
      raise
  best_checkpointer, best = None, None
  if best_metric is not None:
    best_checkpointer, best = _open_best(workdir, signature, best_metric, best_mode, checkpointer)

  def save(step: int, st: Any) -> None:
    nonlocal last_good_checkpoint
    meta = {"model_signature": signature, "step": step, "flags": run_flags}
    checkpointer.save(step, st, meta, data_state=data.get_state())
    last_good_checkpoint = step

  # ---------------------------------------------------------------- evaluation
  eval_writer = None

  def evaluate(step: int, st: Any) -> None:
    nonlocal best
    start = time.perf_counter()
    numbers = eval_fn(st, step)
    record = {"step": step, **{k: _to_python(v) for k, v in numbers.items()}, "eval_sec": time.perf_counter() - start}
    eval_writer.write(record)
    shown = " ".join(
      f"{k} {v:.4g}"
      for k, v in record.items()
      if k not in ("step", "eval_sec") and isinstance(v, float) and not k.endswith("_std")
    )
    logging.info("%s eval step %d | %s", name, step, shown)
    if best_checkpointer is None:
      return
    if best_metric not in numbers:
      raise ConfigError(
        f"best_metric {best_metric!r} is not among the evaluation's numbers ({', '.join(sorted(numbers))})"
      )
    value = float(record[best_metric])
    improved = bool(np.isfinite(value)) and (
      best is None or (value < best["value"] if best_mode == "min" else value > best["value"])
    )
    if jax.process_count() > 1:  # one decision for all processes (the save is collective)
      from jax.experimental import multihost_utils

      improved = bool(multihost_utils.broadcast_one_to_all(np.asarray(improved)))
    if not improved:
      return
    if step in best_checkpointer.all_steps():  # replayed after a resume on hardware that differs in the bits
      best_checkpointer.delete(step)
    meta = {
      "model_signature": signature,
      "step": step,
      "flags": run_flags,
      "best_metric": best_metric,
      "best_mode": best_mode,
      "best_value": value,
      "eval": record,
    }
    best_checkpointer.save(step, st, meta)
    previous = "" if best is None else f" (was {best['value']:.6g} at step {best['step']})"
    logging.info(
      "%s: new best %s %.6g at step %d%s, saved to %s",
      name,
      best_metric,
      value,
      step,
      previous,
      best_checkpointer.directory,
    )
    best = {"value": value, "step": step}

  # ---------------------------------------------------------------- loop
  writer = tensorboard = None
  pending: list[tuple[int, dict]] = []
  # --skip_nonfinite: the last iterations' "dropped" flags, judged over at least 10 iterations.
  recent: collections.deque[bool] = collections.deque(maxlen=max(config.log_every, 10))
  progress = _Progress(config)

  def run_sample_hook(st: Any, s: int) -> None:
    jax.block_until_ready(st)  # the iterations still queued are training time, not the hook's
    with progress.paused("hook"):
      tensorboard.images(_hook_paths(sample_hook(st, s)), s)

  def flush(step: int, st: Any) -> None:
    """One transfer of the metrics since the last log line, then `write_log`."""
    nonlocal pending
    if not pending:
      return
    if jax.process_count() == 1:
      host = jax.device_get([m for _, m in pending])  # one transfer for the whole window
    else:
      host = [jax.tree.map(checkpoint_lib.host_value, m) for _, m in pending]
    steps_done = [s for s, _ in pending]
    pending = []
    # The transfer waited for the window's iterations (training time); the bookkeeping after it is not training.
    rate = progress.rate(step)
    with progress.paused("log"):
      write_log(step, steps_done, host, rate)

  def write_log(step: int, steps_done: list[int], host: list[dict], rate: float | None) -> None:
    """Checks a window's metrics for NaN, then writes its record and the progress line."""
    skipped = []
    for s, m in zip(steps_done, host):
      if not bool(m["finite"]):
        if skip_nonfinite:
          skipped.append(s)
          continue
        nets = nonfinite_networks(m)
        bad = {k: _to_python(v) for k, v in m.items()}
        if primary:
          storage.dump_json(os.path.join(workdir, NONFINITE_FILE), {"step": s, **bad})
        where = (
          f"the last good checkpoint is step {last_good_checkpoint} in {checkpointer.directory}"
          if last_good_checkpoint is not None
          else "no checkpoint was written"
        )
        also = (
          " (and then in the generator's, which trains against it)"
          if nets[:2] == ["discriminator", "generator"]
          else ""
        )
        raise NonFiniteError(
          f"NaN/Inf in the {nets[0]} loss or gradients at iteration {s}{also}: training stopped, "
          f"{where}; metrics in {NONFINITE_FILE}. Lower the learning rate, or pass "
          "--skip_nonfinite to drop such updates"
        )
    # Means over the iterations whose updates were applied (none left: no loss values).
    kept = [m for s, m in zip(steps_done, host) if s not in skipped]
    means = {
      k: float(np.mean([_to_python(m[k]) for m in kept]))
      for k, v in (kept[-1] if kept else {}).items()
      if np.asarray(v).dtype != np.bool_
    }
    record = {"step": step, **means}
    for key, fn in learning_rates.items():
      if key in means:
        raise ConfigError(f"learning_rates name {key!r} is also a metric of the train step: rename it (e.g. {key}_lr)")
      record[key] = float(fn(step))
    eta = progress.eta(step, rate)
    if rate is not None:
      record["steps_per_sec"] = rate
    record["elapsed_sec"] = progress.elapsed()
    if skip_nonfinite:
      record["skipped_nonfinite"] = len(skipped)
    if skipped:
      logging.warning(
        "%s: dropped NaN/Inf updates in %d iteration(s) %s (--skip_nonfinite)", name, len(skipped), skipped
      )
    writer.write(record)
    recent.extend(s in skipped for s in steps_done)
    judged = len(recent) == recent.maxlen or step == config.num_steps
    if skipped and judged and sum(recent) > config.max_skipped_fraction * len(recent):
      where = (
        f"the last good checkpoint is step {last_good_checkpoint}"
        if last_good_checkpoint is not None
        else "no checkpoint was written"
      )
      raise NonFiniteError(
        f"{sum(recent)} of the last {len(recent)} iterations up to {step} had NaN/Inf updates, all dropped by "
        f"--skip_nonfinite: training is not progressing; {where}. Lower the learning rate or fix the input"
      )
    shown = " ".join(f"{k} {means[k]:.4g}" for k in ("d_loss", "g_loss") if k in means)
    speed = "first iteration (compiled)" if rate is None else f"{rate:.1f} it/s | ETA {_format_duration(eta)}"
    logging.info("%s step %d/%d | %s | %s", name, step, config.num_steps, speed, shown)

  step = start_step
  saved_step = start_step if restored is not None else None
  try:
    if primary:
      storage.dump_json(os.path.join(workdir, FLAGS_FILE), run_flags)
    tensorboard = _TensorBoard(workdir, start_step, enabled=config.tensorboard)
    writer = _MetricsWriter(workdir, start_step, tensorboard=tensorboard, prefix="train")
    if eval_fn is not None:
      eval_writer = _MetricsWriter(workdir, start_step, filename=EVAL_FILE, tensorboard=tensorboard, prefix="eval")
    while step < config.num_steps:
      batch = parallel.put_batch(next(data), mesh, batch_axis)
      state, metrics = train_step(state, batch)
      if step == start_step:
        check_metrics(metrics)
        jax.block_until_ready(metrics)  # once: the first iteration (compilation) is left out of the rate
        progress.first_iteration_done(step + 1)
      step += 1
      pending.append((step, metrics))
      at_end = step == config.num_steps
      eval_now = eval_fn is not None and ((config.eval_every and step % config.eval_every == 0) or at_end)
      if step % config.log_every == 0 or step % config.checkpoint_every == 0 or at_end or eval_now:
        flush(step, state)
      if eval_now:  # before this step's checkpoint: a resumed run never misses an evaluation
        with progress.paused("eval"):
          evaluate(step, state)
      if step % config.checkpoint_every == 0 or at_end:
        with progress.paused("save"):
          save(step, state)
        saved_step = step
      stop = stops.requested(step, log_step=step % config.log_every == 0)
      if stop is not None:
        flush(step, state)
        if saved_step != step:
          save(step, state)
        raise Interrupted(
          f"interrupted by {signal.Signals(stop).name} at step {step}; checkpoint saved in {checkpointer.directory}; "
          "rerun the same command to resume",
          128 + stop,
        )
      if sample_hook is not None and ((config.sample_every and step % config.sample_every == 0) or at_end):
        run_sample_hook(state, step)
    if step == start_step and sample_hook is not None and restored is not None:
      run_sample_hook(state, step)
  except OSError as e:
    if e.errno not in _STORAGE_ERRNOS:
      raise
    last = (
      f"the last good checkpoint is step {last_good_checkpoint}"
      if last_good_checkpoint is not None
      else "no checkpoint was written"
    )
    raise StorageError(
      f"could not write {e.filename or workdir} at iteration {step} ({storage.os_reason(e)}); "
      f"{last}: free space or fix the directory and rerun the same command to resume"
    ) from None
  finally:
    for w in (writer, eval_writer, tensorboard):
      if w is not None:
        w.close()
    checkpointer.close()
    if best_checkpointer is not None:
      best_checkpointer.close()
  return state


def _open_best(
  workdir: str, signature: str, best_metric: str, best_mode: str, checkpointer: checkpoint_lib.Checkpointer
) -> tuple[checkpoint_lib.Checkpointer, dict | None]:
  """The best-checkpoint manager and the best so far ({"value", "step"}, None for a new run).

  A best checkpoint of another model, or one chosen by another metric or mode,
  is one clear error (nothing is changed); ``checkpointer`` is closed then.
  """
  directory = os.path.join(workdir, BEST_DIR)
  try:
    meta = read_best(workdir)
    if meta is not None:
      if meta.get("model_signature") != signature:
        raise CheckpointError(
          f"{directory} holds the best checkpoint of a different model "
          f"({meta.get('model_signature')!r}, this run is {signature!r}): use a fresh "
          "--workdir or the flags that wrote it"
        )
      if (meta.get("best_metric"), meta.get("best_mode")) != (best_metric, best_mode):
        raise ConfigError(
          f"{directory} keeps the best by {meta.get('best_metric')} ({meta.get('best_mode')}), "
          f"this run asks for {best_metric} ({best_mode}): use the same --best_metric, or move "
          f"{directory} away to start a new best"
        )
    best_checkpointer = checkpoint_lib.Checkpointer(
      directory, max_to_keep=1, corrupt_dir=os.path.join(workdir, BEST_DIR + "_corrupt")
    )
  except BaseException:
    checkpointer.close()
    raise
  if meta is None:
    return best_checkpointer, None
  logging.info("best %s so far: %.6g at step %d (%s)", best_metric, meta["best_value"], meta["step"], directory)
  return best_checkpointer, {"value": float(meta["best_value"]), "step": int(meta["step"])}


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO)
