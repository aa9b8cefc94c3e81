"""Shared helpers of the reliability tests, and a subprocess entry point.

Helpers (imported by tests/test_crash_resume.py, test_multidevice.py,
test_bad_input.py): the tiny `experiments/wgan.py` command, running it in a
fresh process, reading every checkpoint step back with a read-only orbax
manager, bit-for-bit and float-tolerance comparisons of pytrees, and file
hashes of a workdir.

Entry point (run in a subprocess, because the device count must be fixed
before jax starts)::

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
    python tests/reliability_harness.py dcgan OUT.npz

trains the tiny Radford DCGAN on the vendored 8x8 digits with `trainer.fit`,
once on a 1-device mesh and once on an 8-device mesh, and saves both final
states plus the generator's z for a few iterations drawn under a 1-device and
an 8-device batch sharding.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WGAN = os.path.join(ROOT, "experiments", "wgan.py")
# The tiny WGAN-GP subject of the reliability tests (about 1 s of training).
WGAN_TINY = [
  "--dataset=ring8",
  "--g_widths=16,16",
  "--d_widths=16,16",
  "--batch_size=64",
  "--n_critic=2",
  "--gp_weight=0.1",
  "--lr=1e-3",
  "--log_every=5",
  "--checkpoint_every=5",
  "--sample_every=0",
  "--eval_samples=200",
  "--seed=3",
]
EIGHT_DEVICES = "--xla_force_host_platform_device_count=8"
REFERENCE_STEPS = 40
REFERENCE_ARGS = [*WGAN_TINY, f"--num_steps={REFERENCE_STEPS}", "--keep_checkpoints=10"]


def reference_run(tmp_path_factory) -> dict:
  """The uninterrupted one-device run of REFERENCE_ARGS, made once per pytest session.

  Returns its workdir, every checkpoint (steps 5, 10, ..., 40) as flat
  states, the metrics records without timings and the printed evaluation.
  """
  import json

  base = tmp_path_factory.getbasetemp()
  workdir = os.path.join(str(base), "wgan_reference")
  done = os.path.join(str(base), "wgan_reference.done")
  if not os.path.exists(done):
    proc = run_wgan([*REFERENCE_ARGS, f"--workdir={workdir}"])
    with open(done, "w") as f:
      json.dump({"summary": proc.stdout.strip().splitlines()[-1].split("(")[0]}, f)
  with open(done) as f:
    summary = json.load(f)["summary"]
  checkpoints = restore_all(workdir)
  assert sorted(checkpoints) == list(range(5, REFERENCE_STEPS + 1, 5))
  return {
    "workdir": workdir,
    "checkpoints": {s: c[0] for s, c in checkpoints.items()},
    "metrics": metrics(workdir),
    "summary": summary,
  }


def metrics(workdir: str) -> list[dict]:
  """metrics.jsonl records without the timing fields."""
  import json

  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [{k: v for k, v in r.items() if k not in ("steps_per_sec", "elapsed_sec")} for r in records]


def env(**extra: str) -> dict:
  out = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  out.pop("XLA_FLAGS", None)
  out.update(extra)
  return out


def run_wgan(
  args: list[str], *, extra_env: dict | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess:
  proc = subprocess.run(
    [sys.executable, WGAN, *args],
    capture_output=True,
    text=True,
    env=env(**(extra_env or {})),
    cwd=ROOT,
    timeout=timeout,
  )
  if check and proc.returncode != 0:
    raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
  return proc


def _manager(workdir: str):
  import orbax.checkpoint as ocp

  options = ocp.CheckpointManagerOptions(read_only=True)
  return ocp.CheckpointManager(
    os.path.join(workdir, "checkpoints"),
    options=options,
    item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
  )


def listed_steps(workdir: str) -> list[int]:
  """The steps orbax lists in ``workdir/checkpoints`` (read-only; touches nothing)."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return []
  manager = _manager(workdir)
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def restore_all(workdir: str) -> dict[int, tuple[dict, dict]]:
  """Every listed step restored onto this process's first device, whatever devices
  wrote it: {step: (flat state, meta)}; raises if one step fails."""
  import jax
  import orbax.checkpoint as ocp

  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  manager = _manager(workdir)
  out = {}
  try:
    for step in sorted(manager.all_steps()):
      abstract = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), manager.item_metadata(step)["state"]
      )
      restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
      )
      out[step] = (flatten(restored["state"]), dict(restored["meta"]))
  finally:
    manager.close()
  return out


def restore_step(workdir: str, step: int) -> dict:
  """The flat state of checkpoint ``step``."""
  return restore_all(workdir)[step][0]


def flatten(tree) -> dict[str, np.ndarray]:
  """{"gen/params/Dense_0/kernel": array, ...} for a GANState or its restored dict alike."""
  import jax

  return {
    jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x)
    for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def assert_bit_identical(a: dict, b: dict) -> None:
  assert sorted(a) == sorted(b)
  assert len(a) > 10
  for k in a:
    assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
    assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


def max_abs_diff(a: dict, b: dict, prefix: str = "") -> float:
  """Largest |a - b| over float leaves whose path starts with ``prefix``."""
  assert sorted(a) == sorted(b)
  diffs = [
    float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))))
    for k in a
    if k.startswith(prefix) and a[k].dtype.kind == "f" and a[k].size
  ]
  assert diffs, prefix
  return max(diffs)


def assert_close(
  a: dict, b: dict, rtol: float, atol: float, max_outliers: float = 0.0, outlier_atol: float = 0.0
) -> int:
  """Integer leaves equal; float leaves within ``atol + rtol * |b|`` except at most a
  fraction ``max_outliers`` of all float coordinates, which must be within ``outlier_atol``.

  Outliers exist for a real reason: Adam divides each coordinate's gradient by its
  own running RMS, so a gradient that is exactly 0 in one run and 1e-12 (rounding
  noise of a different summation order) in the other becomes a full learning-rate
  step. Returns the number of outliers.
  """
  assert sorted(a) == sorted(b)
  outliers = total = 0
  for k in a:
    if a[k].dtype.kind != "f":
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
      continue
    diff = np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))
    outside = diff > atol + rtol * np.abs(b[k].astype(np.float64))
    outliers += int(outside.sum())
    total += diff.size
    if outside.any():
      assert diff.max() <= outlier_atol, (k, float(diff.max()))
  assert outliers <= max_outliers * total, (outliers, total)
  return outliers


def snapshot(directory: str) -> dict[str, str]:
  """sha256 of every file under ``directory`` (empty dirs listed as 'dir')."""
  out = {}
  for root, dirs, files in os.walk(directory):
    if not dirs and not files and root != directory:
      out[os.path.relpath(root, directory) + "/"] = "dir"
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


def error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("error: ")]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# ---------------------------------------------------------------------------- subprocess entry point


def _train_dcgan(out_path: str) -> None:
  import functools
  import tempfile

  import jax
  import optax

  from jaxgan import parallel, trainer
  from jaxgan.data import images
  from jaxgan.families import gan
  from jaxgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
  from jaxgan.state import create_gan_state

  class Renamed:
    """{"image", "label"} -> {"x"} batches; keeps get_state / set_state."""

    def __init__(self, it):
      self._it = it

    def __iter__(self):
      return self

    def __next__(self):
      return {"x": next(self._it)["image"]}

    def get_state(self):
      return self._it.get_state()

    def set_state(self, state):
      self._it.set_state(state)

  config = gan.Config(loss="non_saturating", latent_dim=8)
  batch, num_steps = 64, 6
  results = {}
  source = images.make_source("digits", "train")
  for n in (1, 8):
    mesh = parallel.make_data_mesh(n)
    state = create_gan_state(
      seed=5,
      generator=DCGANGenerator.tiny(),
      discriminator=DCGANDiscriminator.tiny(),
      g_tx=optax.adam(2e-3, b1=0.5),
      d_tx=optax.adam(2e-3, b1=0.5),
      latent_dim=config.latent_dim,
      data_shape=(8, 8, 1),
    )
    train_step = parallel.compile_step(functools.partial(gan.train_step, config=config), mesh=mesh, batch_axis=1)
    data = Renamed(images.make_iterator(source, batch, seed=5, n_critic=1, num_threads=1, prefetch=1))
    with tempfile.TemporaryDirectory() as workdir:
      tconfig = trainer.TrainerConfig(
        workdir=workdir, num_steps=num_steps, log_every=num_steps, checkpoint_every=num_steps
      )
      final = trainer.fit(name="dcgan_tiny", state=state, train_step=train_step, data=data, config=tconfig, mesh=mesh)
    for k, v in flatten(jax.device_get(final)).items():
      results[f"state{n}/{k}"] = v
    assert any(v.size > 1 for k, v in flatten(final.gen.batch_stats).items()), "no BatchNorm statistics"

    # The generator's z of iteration s, drawn by the chain of gan.train_step / g_update
    # (fold_in(key, step) -> (d_key, g_key) -> g_key split per G update -> z key), under
    # a batch sharding over this mesh.
    def z_of(key, step):
      d_key, g_key = jax.random.split(jax.random.fold_in(key, step))
      z_key = jax.random.split(jax.random.split(g_key, config.n_gen)[0], 4)[0]
      return gan.sample_latent(z_key, batch, config)

    z_fn = jax.jit(z_of, out_shardings=parallel.batch_sharded(mesh, 0))
    for s in (0, 3, 5):
      z = z_fn(final.key, s)
      assert len(z.sharding.device_set) == n
      results[f"z{n}/{s}"] = np.asarray(z)
  np.savez(out_path, **results)


if __name__ == "__main__":
  if sys.argv[1] == "dcgan":
    _train_dcgan(sys.argv[2])
  else:
    raise SystemExit(f"unknown job {sys.argv[1]}")
