"""Shared plumbing for the absl entry points in ``experiments/``.

`run(main)` is `absl.app.run` with two changes: a flag that fails to parse (an
unknown flag or value, a missing flagfile, a value out of range) and any
`jaxgan.errors.JaxganError` raised by ``main`` end the program with one line on
stderr, ``error: ...``, and exit status 2 (flags) or 1 (everything else).
"""

from __future__ import annotations

import sys
from typing import Callable

import logging as logging_std

from absl import app, flags, logging

from jaxgan.errors import JaxganError

FLAGS = flags.FLAGS


def _fail(message: str, code: int) -> None:
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  sys.exit(code)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(" ".join(str(e).split()), 2)


class _QuietLibraries(logging_std.Filter):
  """Drops INFO records that orbax logs for every save; warnings still pass."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno >= logging_std.WARNING or "/orbax/" not in record.pathname


def run(main: Callable[[list[str]], None]) -> None:
  """Runs ``main`` under absl with one-line errors for bad input."""

  def wrapped(argv):
    logging.get_absl_handler().addFilter(_QuietLibraries())
    try:
      main(argv)
    except JaxganError as e:
      _fail(str(e), 1)

  app.run(wrapped, flags_parser=_parse_flags)


def resolved_flags() -> dict:
  """Every flag defined by the entry point or by jaxgan, with its value (stored with checkpoints)."""
  out = {}
  for module, module_flags in FLAGS.flags_by_module_dict().items():
    if module in ("__main__", sys.argv[0]) or module.startswith("jaxgan") or module.endswith(".py"):
      for f in module_flags:
        out[f.name] = f.value
  return out


def define_common_flags(default_steps: int, default_batch: int) -> None:
  """Flags every experiment has: workdir, seed, length, logging cadence."""
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and figures; a run resumes from it.",
                      required=True)
  flags.DEFINE_integer("seed", 0, "The run's one seed: initialisation, data order and every sampling key.")
  flags.DEFINE_integer("num_steps", default_steps, "Training iterations (one = n_critic D + n_gen G updates).",
                       lower_bound=0)
  flags.DEFINE_integer("batch_size", default_batch, "Global batch size (split over devices).", lower_bound=1)
  flags.DEFINE_integer("log_every", 500, "Iterations between metric logs.", lower_bound=1)
  flags.DEFINE_integer("checkpoint_every", 5000, "Iterations between checkpoints.", lower_bound=1)
  flags.DEFINE_integer("sample_every", 5000, "Iterations between sample figures (0: only at the end).",
                       lower_bound=0)
  flags.DEFINE_integer("keep_checkpoints", 3, "How many recent checkpoints to keep.", lower_bound=1)
  flags.DEFINE_integer("num_devices", None, "Devices in the data mesh (default: all).", lower_bound=1)
  flags.DEFINE_bool("skip_nonfinite", False, "Drop updates with NaN/Inf losses or gradients instead of stopping.")
