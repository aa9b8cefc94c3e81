"""User-facing errors. Entry points print one line for these and exit non-zero."""


class JaxganError(Exception):
  """Base class of errors caused by input (flags, data, checkpoints), not by bugs."""


class ConfigError(JaxganError, ValueError):
  """An invalid setting: an unknown name or an out-of-range value."""


class CheckpointError(JaxganError, RuntimeError):
  """A checkpoint this run cannot use."""


class NonFiniteError(JaxganError, FloatingPointError):
  """Training produced NaN or Inf."""


class StorageError(JaxganError, OSError):
  """The run's files cannot be written (a full disk, a read-only filesystem)."""


class Interrupted(JaxganError):
  """Training stopped by a signal (SIGTERM from a scheduler, Ctrl-C) after saving a checkpoint.

  ``exit_code`` is the conventional 128 + signal number (143 for SIGTERM, 130
  for SIGINT), which the entry points exit with.
  """

  def __init__(self, message: str, exit_code: int):
    super().__init__(message)
    self.exit_code = exit_code
