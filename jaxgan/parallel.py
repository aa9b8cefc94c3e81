"""Data parallelism with `jax.jit` over a `jax.make_mesh` mesh.

The state is replicated over the mesh and every batch is split along its batch
axis over the ``data`` axis; XLA inserts the gradient all-reduce. The same code
runs on one CPU, eight GPUs or a multi-host pod (after
`jax.distributed.initialize`), since `jax.devices()` then spans every process.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_data_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh named ``data`` over ``num_devices`` (default: every device, all hosts)."""
  available = jax.device_count()
  num_devices = available if num_devices is None else num_devices
  if not 1 <= num_devices <= available:
    raise ValueError(f"asked for {num_devices} devices but {available} are visible")
  return jax.make_mesh((num_devices,), (DATA_AXIS,), devices=jax.devices()[:num_devices])


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (used for the GAN state)."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  """Arrays split along ``batch_axis`` over the data axis (``batch_axis`` = 1 for batches
  with a leading n_critic axis)."""
  return NamedSharding(mesh, P(*([None] * batch_axis), DATA_AXIS))


def check_batch_divisible(batch_size: int, mesh: Mesh) -> None:
  """A clear error when the global batch does not split evenly over the devices."""
  n = mesh.shape[DATA_AXIS]
  if batch_size % n:
    raise ValueError(f"batch size {batch_size} is not divisible by the {n} devices of the mesh: "
                     f"use a multiple of {n}")


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """Places a host pytree on every device of ``mesh``."""
  return jax.device_put(tree, replicated(mesh))


def put_batch(batch: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
  """Places a global batch, split along ``batch_axis``.

  In a multi-process run each process passes the *global* batch shape built
  from its local shard (see `host_local_to_global`).
  """
  sharding = batch_sharded(mesh, batch_axis)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return host_local_to_global(batch, mesh, batch_axis)


def host_local_to_global(local_batch: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
  """Assembles per-process batch shards into global arrays (multi-host input)."""
  sharding = batch_sharded(mesh, batch_axis)

  def assemble(x):
    x = np.asarray(x)
    global_shape = list(x.shape)
    global_shape[batch_axis] *= jax.process_count()
    return jax.make_array_from_process_local_data(sharding, x, tuple(global_shape))

  return jax.tree.map(assemble, local_batch)
