"""Data parallelism: 8 CPU devices and 2 processes train the same model as 1 device.

Each run is a fresh process: ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
must be set before jax starts, and `jax.distributed.initialize` once per process.
Float32 tolerance, not bits: the gradient all-reduce sums in a different order.
Adam can turn that rounding noise into a learning-rate-sized step on a
coordinate whose gradient is exactly zero in one run (a ReLU unit that is dead,
or sits exactly at its kink, for the whole batch), so the WGAN-GP comparison allows a few such coordinates
(`reliability_harness.assert_close`).
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import reliability_harness as h

RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return h.reference_run(tmp_path_factory)


def _reference_until(reference, step, workdir):
  """A copy of the reference workdir cut back to its checkpoints up to ``step``."""
  shutil.copytree(reference["workdir"], workdir)
  for name in os.listdir(os.path.join(workdir, "checkpoints")):
    if int(name) > step:
      shutil.rmtree(os.path.join(workdir, "checkpoints", name))
  return workdir


@pytest.mark.slow
def test_wgan_gp_on_8_devices_matches_1_device(tmp_path, reference):
  """Resumes the 1-device run's step-10 checkpoint on 8 devices and trains to 20."""
  workdir = _reference_until(reference, 10, str(tmp_path / "eight"))
  proc = h.run_wgan(
    [*h.REFERENCE_ARGS, "--num_steps=20", "--num_devices=8", f"--workdir={workdir}"],
    extra_env={"XLA_FLAGS": h.EIGHT_DEVICES},
  )
  assert "resumed wgan_toy from step 10" in proc.stderr
  for step in (15, 20):
    eight, one = h.restore_step(workdir, step), reference["checkpoints"][step]
    # At most 0.5% of coordinates may be Adam-amplified rounding noise, within 2 lr steps.
    outliers = h.assert_close(eight, one, RTOL, ATOL, max_outliers=0.005, outlier_atol=2e-3)
    print(
      f"\nwgan-gp step {step}: max |8 devices - 1 device| = {h.max_abs_diff(eight, one):.3g}, "
      f"{outliers} coordinate(s) outside rtol={RTOL}, atol={ATOL}"
    )
  assert [m["step"] for m in h.metrics(workdir)] == [5, 10, 15, 20]


@pytest.mark.slow
def test_dcgan_with_batchnorm_on_8_devices_matches_1_device_and_z_stream_is_identical(tmp_path):
  out = str(tmp_path / "dcgan.npz")
  proc = subprocess.run(
    [sys.executable, os.path.join(h.ROOT, "tests", "reliability_harness.py"), "dcgan", out],
    capture_output=True,
    text=True,
    env=h.env(XLA_FLAGS=h.EIGHT_DEVICES),
    cwd=h.ROOT,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  d = np.load(out)
  one = {k[len("state1/") :]: d[k] for k in d.files if k.startswith("state1/")}
  eight = {k[len("state8/") :]: d[k] for k in d.files if k.startswith("state8/")}
  assert any("batch_stats" in k for k in one)
  params, stats = h.max_abs_diff(eight, one, "gen/params"), h.max_abs_diff(eight, one, "gen/batch_stats")
  print(f"\ndcgan: max |8 devices - 1 device| G params {params:.3g}, G batch stats {stats:.3g}")
  h.assert_close(eight, one, RTOL, ATOL)
  for s in (0, 3, 5):
    assert d[f"z1/{s}"].tobytes() == d[f"z8/{s}"].tobytes(), s
  assert d["z1/0"].tobytes() != d["z1/3"].tobytes()


def _two_processes(args, timeout=600):
  """Runs wgan.py as processes 0 and 1 of one job; returns their (returncode, stderr)."""
  address = f"127.0.0.1:{h.free_port()}"
  procs = [
    subprocess.Popen(
      [sys.executable, h.WGAN, *args, f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}"],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env=h.env(),
      cwd=h.ROOT,
    )
    for i in (0, 1)
  ]
  results = []
  try:
    for p in procs:
      _, err = p.communicate(timeout=timeout)
      results.append((p.returncode, err))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for code, err in results:
    assert code == 0, err[-3000:]
  return results


@pytest.mark.slow
def test_two_processes_with_sharded_input_match_one_process(tmp_path, reference):
  """Two processes joined over 127.0.0.1 (gloo), each feeding its half of every batch,
  restore the 1-process run's step-10 checkpoint, save steps 15 and 20 together (every
  process calls save) and end where one process ends."""
  workdir = _reference_until(reference, 10, str(tmp_path / "two"))
  results = _two_processes([*h.REFERENCE_ARGS, "--num_steps=20", f"--workdir={workdir}"])
  for i, (_, err) in enumerate(results):
    assert f"process {i} of 2 joined; 2 devices in all, 1 local" in err
    assert "resumed wgan_toy from step 10" in err
  listed = h.restore_all(workdir)
  assert sorted(listed) == [5, 10, 15, 20]
  assert listed[20][1]["data_states"] == [{"position": 20}, {"position": 20}]
  for step in (15, 20):
    two, one = listed[step][0], reference["checkpoints"][step]
    print(f"\n2 processes step {step}: max |2 processes - 1 process| = {h.max_abs_diff(two, one):.3g}")
    h.assert_close(two, one, RTOL, ATOL)
  mine, ref = h.metrics(workdir), [m for m in reference["metrics"] if m["step"] <= 20]
  assert [m["step"] for m in mine] == [m["step"] for m in ref]
  np.testing.assert_allclose([m["d_loss"] for m in mine], [m["d_loss"] for m in ref], rtol=1e-4)
