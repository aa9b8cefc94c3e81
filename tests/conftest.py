"""Shared test settings: CPU only, small thread pools, no network for tfds."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TFDS_DATA_DIR", "/nonexistent-tfds-data-dir")
