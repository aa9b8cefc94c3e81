"""Writing a run's files atomically: a temporary file renamed into place, and one clear error when it fails.

* `atomic_write(path, write)` -- ``write(tmp_path)`` then ``os.replace(tmp, path)``:
  a reader sees the old file or the new one, never half of one; on failure
  the temporary file is removed and the error is one `jaxgan.errors.StorageError`
  naming the file and the reason (a full disk, a read-only filesystem).
* `dump_json(path, obj)` -- JSON through `atomic_write`.

Every figure (`jaxgan.viz`), report (eval.json, mode_metrics.json, ...) and
`flags.json` is written this way, so a disk that fills after the last
checkpoint ends the run with one line and no stray temporary file.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from typing import Any

from jaxgan.errors import StorageError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def os_reason(e: OSError) -> str:
  """A short reason for an OSError ("no space left on device" for a full disk or quota)."""
  if e.errno in DISK_FULL:
    return "no space left on device"
  return e.strerror or str(e)


def atomic_write(path: str, write: Callable[[str], Any]) -> str:
  """Calls ``write(tmp)`` for a temporary path beside ``path``, then renames it to ``path``; returns ``path``."""
  path = os.path.abspath(path)
  base, ext = os.path.splitext(path)
  tmp = f"{base}.tmp{os.getpid()}{ext}"  # keeps the extension: writers choose the format by it
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write(tmp)
    os.replace(tmp, path)
  except OSError as e:
    try:
      os.remove(tmp)
    except OSError:
      pass
    hint = "free space" if e.errno in DISK_FULL else "fix the directory"
    raise StorageError(f"could not write {path} ({os_reason(e)}): {hint} and rerun the same command") from None
  return path


def dump_json(path: str, obj: Any) -> str:
  """Writes ``obj`` as indented JSON with sorted keys, atomically (`atomic_write`)."""

  def write(tmp: str) -> None:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True, default=str)

  return atomic_write(path, write)
