"""Data parallelism with `jax.jit` over a 1-D device mesh, on one host or many; `compile_step` for any step.

`compile_step(step_fn, mesh=..., seeds=...)` turns any pure step
``(state, batch) -> (state, metrics)`` -- a family's ``train_step`` with its
config bound, or a researcher's own -- into the compiled step
`jaxgan.trainer.fit` drives: ``jax.jit`` with the state donated, the state
replicated and the batch split over the mesh, and with ``seeds=True`` K
independent runs vmapped over a stacked state (`jaxgan.multiseed`).

The state is replicated over the mesh and every batch is split along its batch
axis over the ``data`` axis; XLA inserts the gradient all-reduce. BatchNorm
statistics inside the jitted step are then computed over the *global* batch,
so a data-parallel step computes the same function as a one-device step (up to
the summation order of the all-reduce).

The same code runs on one CPU, eight GPUs or a multi-host pod: after
`initialize_distributed`, `jax.devices()` spans every process. The mesh lists
devices process-major, so process p owns the contiguous rows
``[p * B / P, (p + 1) * B / P)`` of every global batch of B rows; its input
pipeline produces exactly those rows (`process_batch_slice`) and `put_batch`
assembles the global array without moving data between hosts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgan import multiseed
from jaxgan.errors import ConfigError

DATA_AXIS = "data"


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  auto: bool = False,
) -> bool:
  """Joins a multi-process JAX run; must run before anything touches a device.

  With ``coordinator_address`` (``host:port`` of process 0), ``num_processes``
  and ``process_id`` the processes rendezvous there. With ``auto`` and no
  address, `jax.distributed.initialize()` detects the cluster itself (Cloud TPU
  pods, SLURM, Open MPI, Kubernetes JobSet). CPU processes exchange collectives
  over gloo. Returns True if a multi-process run was initialised.
  """
  if coordinator_address is None and not auto:
    if num_processes not in (None, 1) or process_id not in (None, 0):
      raise ConfigError(
        "--num_processes/--process_id need --coordinator_address (or --distributed for cluster auto-detection)"
      )
    return False
  if coordinator_address is not None:
    if num_processes is None or process_id is None:
      raise ConfigError(
        "--coordinator_address needs --num_processes and --process_id (or JAX_NUM_PROCESSES and JAX_PROCESS_ID)"
      )
    if not 0 <= process_id < num_processes:
      raise ConfigError(f"--process_id must be in [0, {num_processes}), got {process_id}")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
  except (RuntimeError, ValueError) as e:
    raise ConfigError(
      f"could not join the distributed run at {coordinator_address or 'auto-detected cluster'}: "
      f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
    ) from None
  logging.info(
    "process %d of %d joined; %d devices in all, %d local",
    jax.process_index(),
    jax.process_count(),
    jax.device_count(),
    jax.local_device_count(),
  )
  return True


def make_data_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh named ``data`` over ``num_devices`` (default: every device of every process).

  Devices are ordered by (process, local id), and in a multi-process run every
  process contributes the same number of devices, so each process owns one
  contiguous block of every batch.
  """
  available = jax.device_count()
  num_devices = available if num_devices is None else num_devices
  if not 1 <= num_devices <= available:
    raise ConfigError(
      f"asked for {num_devices} devices but {available} are visible: use --num_devices between 1 and {available}"
    )
  nproc = jax.process_count()
  if num_devices % nproc:
    raise ConfigError(
      f"--num_devices={num_devices} does not split over the {nproc} processes: use a multiple of {nproc}"
    )
  per_process = num_devices // nproc
  by_process: dict[int, list] = {}
  for d in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
    by_process.setdefault(d.process_index, []).append(d)
  devices = [d for p in sorted(by_process) for d in by_process[p][:per_process]]
  # Auto axes: shardings are given to jit and propagated by XLA (no sharding-in-types).
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


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
    raise ConfigError(
      f"--batch_size={batch_size} is not divisible by the {n} devices of the mesh: use a multiple of {n}"
    )


def process_batch_slice(global_batch: int, process_index: int | None = None, process_count: int | None = None) -> slice:
  """The rows of a global batch that one process feeds (a contiguous block).

  Matches the process-major mesh of `make_data_mesh`: process p of P feeds rows
  ``[p * B / P, (p + 1) * B / P)``.
  """
  p = jax.process_index() if process_index is None else process_index
  n = jax.process_count() if process_count is None else process_count
  if global_batch % n:
    raise ConfigError(f"--batch_size={global_batch} is not divisible by the {n} processes")
  local = global_batch // n
  return slice(p * local, (p + 1) * local)


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """Places a host pytree on every device of ``mesh``."""
  return jax.device_put(tree, replicated(mesh))


def put_batch(batch: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
  """Places a batch split along ``batch_axis``.

  With one process ``batch`` is the global batch. With several, it is this
  process's block of it (`process_batch_slice`), and the global array is
  assembled from every process's block (`host_local_to_global`).
  """
  if jax.process_count() == 1:
    return jax.device_put(batch, batch_sharded(mesh, batch_axis))
  return host_local_to_global(batch, mesh, batch_axis)


def host_local_to_global(local_batch: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
  """Assembles per-process batch blocks into global arrays (multi-host input)."""
  sharding = batch_sharded(mesh, batch_axis)
  nproc = jax.process_count()

  def assemble(x):
    x = np.asarray(x)
    global_shape = list(x.shape)
    global_shape[batch_axis] *= nproc
    rows = sorted(
      {
        idx[batch_axis].indices(global_shape[batch_axis])[:2]
        for idx in sharding.addressable_devices_indices_map(tuple(global_shape)).values()
      }
    )
    expected = process_batch_slice(global_shape[batch_axis])
    if (rows[0][0], rows[-1][1]) != (expected.start, expected.stop) or any(
      a[1] != b[0] for a, b in zip(rows, rows[1:])
    ):
      raise ConfigError(
        f"process {jax.process_index()} owns rows {rows} of the batch, not the block "
        f"{expected.start}:{expected.stop} its input pipeline produced; build the mesh "
        "with jaxgan.parallel.make_data_mesh"
      )
    return jax.make_array_from_process_local_data(sharding, x, tuple(global_shape))

  return jax.tree.map(assemble, local_batch)


@dataclasses.dataclass(frozen=True)
class CompiledStep:
  """A jitted ``(state, batch) -> (state, metrics)`` with where its inputs go.

  Attributes:
    fn: the jitted function (call the object itself).
    mesh: the data mesh its shardings use (None: jit's default placement).
    batch_axis: the batch axis of the batches it takes (after any seed axis),
      which `jaxgan.trainer.fit` splits over the mesh.
    seeds: whether it maps over a stacked multi-seed state.
  """

  fn: Callable
  mesh: Mesh | None
  batch_axis: int
  seeds: bool

  def __call__(self, state, batch):
    return self.fn(state, batch)

  def lower(self, state, batch):
    """``jax.jit(...).lower``: for ahead-of-time compilation and cost analysis."""
    return self.fn.lower(state, batch)


def compile_step(
  step_fn: Callable,
  *,
  mesh: Mesh | None = None,
  batch_axis: int = 1,
  seeds: bool = False,
  shared_batch: bool = False,
  flat_metrics: bool = True,
  donate: bool = True,
) -> CompiledStep:
  """jit + donation + mesh sharding + K-seed vmapping for any step ``(state, batch) -> (state, metrics)``.

  Args:
    step_fn: the pure step, e.g. ``functools.partial(gan.train_step, config=config)``.
    mesh: a data mesh (`make_data_mesh`): the state is replicated over it and
      every batch split along ``batch_axis`` over its ``data`` axis; XLA adds
      the gradient all-reduce. None: no shardings (one device).
    batch_axis: the batch axis of one seed's batch (1 for the GAN family's
      batches with a leading n_critic axis, 0 for Pix2Pix / CycleGAN).
    seeds: the state is a stack of K runs (`jaxgan.multiseed.stack_states`):
      the step is vmapped over `jaxgan.multiseed.seed_axes` (batches then carry
      a leading seed axis unless ``shared_batch``).
    shared_batch, flat_metrics: see `jaxgan.multiseed.vmap_seeds`.
    donate: donate the state's buffers to the output (the caller must not use
      the input state afterwards).

  Returns:
    A `CompiledStep`; `jaxgan.trainer.fit` reads its mesh and batch axis.
  """
  fn = multiseed.vmap_seeds(step_fn, shared_batch=shared_batch, flat_metrics=flat_metrics) if seeds else step_fn
  axis = batch_axis + (1 if seeds and not shared_batch else 0)
  donate_argnums = (0,) if donate else ()
  if mesh is None:
    jitted = jax.jit(fn, donate_argnums=donate_argnums)
  else:
    jitted = jax.jit(
      fn,
      donate_argnums=donate_argnums,
      in_shardings=(replicated(mesh), batch_sharded(mesh, axis)),
      out_shardings=(replicated(mesh), None),
    )
  return CompiledStep(fn=jitted, mesh=mesh, batch_axis=axis, seeds=seeds)
