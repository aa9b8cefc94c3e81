"""Shared test settings: CPU only, no network for tfds, one persistent compilation cache per test session.

The suite starts the experiment scripts in fresh processes many times (crash,
preemption, bad-input and CLI tests run the same tiny WGAN-GP dozens of
times). JAX's persistent compilation cache, in a directory of this session
that every subprocess inherits through the environment, lets those processes
load the compiled programs instead of compiling them again: the same
executables, so the same bits, in less time.
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TFDS_DATA_DIR", "/nonexistent-tfds-data-dir")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxgan-test-jit-cache-")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
