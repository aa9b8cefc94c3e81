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
