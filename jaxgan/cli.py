"""Shared plumbing for the absl entry points in ``experiments/``.

`run(main)` is `absl.app.run` with two changes: a flag that fails to parse (an
unknown flag or value, a missing flagfile, a value out of range) and any
`jaxgan.errors.JaxganError` raised by ``main`` end the program with one line on
stderr, ``error: ...``, and exit status 2 (flags) or 1 (everything else); and
when the entry point has the common flags, a multi-process run is joined
(`jaxgan.parallel.initialize_distributed`) before ``main`` touches a device.

Multi-process flags (see docs/multihost.md): ``--coordinator_address``,
``--num_processes`` and ``--process_id`` (defaults: the environment variables
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), or
``--distributed`` to let `jax.distributed.initialize` detect a TPU pod or a
SLURM / Open MPI / Kubernetes cluster.
"""

from __future__ import annotations

import logging as logging_std
import os
import sys
from collections.abc import Callable

from absl import app, flags, logging

from jaxgan.errors import JaxganError

FLAGS = flags.FLAGS


def _fail(message: str, code: int) -> None:
  """Writes the one error line and exits with ``code``.

  The line goes to the real stream, past `_DropClosedLoopTracebacks`, so no
  half-printed report can swallow it. Interpreter teardown still runs (atexit
  handlers, file closing), but with stderr pointed at /dev/null: after a failed
  checkpoint write, orbax's background event loop can leave failed write tasks
  behind whose reports would otherwise follow the error line.
  """
  stream = sys.stderr._stream if isinstance(sys.stderr, _DropClosedLoopTracebacks) else sys.stderr
  stream.write(f"error: {message}\n")
  stream.flush()
  sys.stdout.flush()
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  os.close(devnull)
  sys.exit(code)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(" ".join(str(e).split()).removeprefix("ERROR:: "), 2)


class _DropClosedLoopTracebacks:
  """A stderr wrapper that drops tracebacks ending in ``RuntimeError: Event loop is closed``.

  When a checkpoint write fails (a full disk), orbax closes the event loop of
  that save while tensorstore still completes the other writes of it; each
  completion callback then fails on the closed loop and Python prints its
  traceback straight to stderr, around the one error line. Those reports carry
  nothing for the user; every other line (and every other traceback) passes
  through unchanged. Lines are passed on whole.
  """

  _END = "RuntimeError: Event loop is closed"

  def __init__(self, stream):
    self._stream = stream
    self._line = ""
    self._block: list[str] | None = None

  def write(self, text: str) -> int:
    self._line += text
    while "\n" in self._line:
      line, self._line = self._line.split("\n", 1)
      self._take(line + "\n")
    return len(text)

  def _take(self, line: str) -> None:
    if self._block is None:
      if line.startswith("Traceback (most recent call last):"):
        self._block = [line]
      else:
        self._stream.write(line)
      return
    self._block.append(line)
    if line[:1] not in (" ", "\t"):  # the exception line closes the report
      block, self._block = self._block, None
      if line.strip() != self._END:
        self._stream.write("".join(block))

  def flush(self) -> None:
    if self._block is None and self._line:
      self._stream.write(self._line)
      self._line = ""
    self._stream.flush()

  def __getattr__(self, name):
    return getattr(self._stream, name)


class _DropOrbaxOrphanTasks(logging_std.Filter):
  """Drops asyncio's "Task exception was never retrieved" for orbax write tasks.

  After a failed checkpoint write (reported as one error line) the other write
  tasks of that save fail too, and nobody awaits them any more.
  """

  def filter(self, record: logging_std.LogRecord) -> bool:
    if not str(record.msg).startswith("Task exception was never retrieved"):
      return True
    return "orbax" not in record.getMessage()  # the message names the task's coroutine and its file


class _QuietLibraries(logging_std.Filter):
  """Drops INFO records that orbax logs for every save; warnings still pass."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno >= logging_std.WARNING or "/orbax/" not in record.pathname


def run(main: Callable[[list[str]], None]) -> None:
  """Runs ``main`` under absl with one-line errors for bad input."""

  def wrapped(argv):
    logging.get_absl_handler().addFilter(_QuietLibraries())
    logging_std.getLogger("asyncio").addFilter(_DropOrbaxOrphanTasks())
    if not isinstance(sys.stderr, _DropClosedLoopTracebacks):
      sys.stderr = _DropClosedLoopTracebacks(sys.stderr)
    try:
      if "coordinator_address" in FLAGS:
        from jaxgan import parallel  # imported late: jax must not start before flags are parsed

        parallel.initialize_distributed(
          FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, auto=FLAGS.distributed
        )
      main(argv)
    except JaxganError as e:
      _fail(str(e), 1)

  app.run(wrapped, flags_parser=_parse_flags)


def resolved_flags() -> dict:
  """Every flag defined by the entry point or by jaxgan, with its value (stored with checkpoints)."""
  out = {}
  for module, module_flags in FLAGS.flags_by_module_dict().items():
    if (
      module in ("__main__", sys.argv[0])
      or module.startswith("jaxgan")
      or module.endswith(".py")
      or _beside_main_script(module)
    ):
      for f in module_flags:
        out[f.name] = f.value
  return out


def _beside_main_script(module: str) -> bool:
  """Whether ``module`` sits in the entry point's directory (e.g. experiments/i2i_common.py)."""
  main_file = getattr(sys.modules.get("__main__"), "__file__", None)
  module_file = getattr(sys.modules.get(module), "__file__", None)
  return bool(main_file and module_file) and os.path.dirname(os.path.abspath(module_file)) == os.path.dirname(
    os.path.abspath(main_file)
  )


def define_common_flags(default_steps: int, default_batch: int) -> None:
  """Flags every experiment has: workdir, seed, length, logging cadence."""
  flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, metrics and figures; a run resumes from it.", required=True
  )
  flags.DEFINE_integer("seed", 0, "The run's one seed: initialisation, data order and every sampling key.")
  flags.DEFINE_integer(
    "num_steps", default_steps, "Training iterations (one = n_critic D + n_gen G updates).", lower_bound=0
  )
  flags.DEFINE_integer("batch_size", default_batch, "Global batch size (split over devices).", lower_bound=1)
  flags.DEFINE_integer("log_every", 500, "Iterations between metric logs.", lower_bound=1)
  flags.DEFINE_integer("checkpoint_every", 5000, "Iterations between checkpoints.", lower_bound=1)
  flags.DEFINE_integer("sample_every", 5000, "Iterations between sample figures (0: only at the end).", lower_bound=0)
  flags.DEFINE_integer("keep_checkpoints", 3, "How many recent checkpoints to keep.", lower_bound=1)
  flags.DEFINE_integer("num_devices", None, "Devices in the data mesh (default: all).", lower_bound=1)
  flags.DEFINE_bool("skip_nonfinite", False, "Drop updates with NaN/Inf losses or gradients instead of stopping.")
  flags.DEFINE_string(
    "coordinator_address",
    os.environ.get("JAX_COORDINATOR_ADDRESS") or None,
    "host:port of process 0 in a multi-process run (default: $JAX_COORDINATOR_ADDRESS).",
  )
  flags.DEFINE_integer(
    "num_processes",
    _env_int("JAX_NUM_PROCESSES"),
    "Processes in a multi-process run (default: $JAX_NUM_PROCESSES).",
    lower_bound=1,
  )
  flags.DEFINE_integer(
    "process_id",
    _env_int("JAX_PROCESS_ID"),
    "This process's index in [0, num_processes) (default: $JAX_PROCESS_ID).",
    lower_bound=0,
  )
  flags.DEFINE_bool(
    "distributed",
    False,
    "Join a multi-process run whose coordinator jax detects itself "
    "(Cloud TPU pod, SLURM, Open MPI, Kubernetes); not needed with --coordinator_address.",
  )


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError:
    _fail(f"environment variable {name}={value!r} is not an integer", 2)
