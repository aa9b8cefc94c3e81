"""experiments/metropolis.py: the seed-002 MCMC baseline, scored with the GANs' mode metric."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "metropolis.py")


def run(args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_spread_chains_cover_the_grid_and_one_chain_stays_in_one_mode(tmp_path):
  spread = run([f"--workdir={tmp_path / 'spread'}", "--dataset=grid25", "--num_chains=500", "--burn_in=500"])
  assert spread.returncode == 0, spread.stderr
  with open(tmp_path / "spread" / "mode_metrics.json") as f:
    m = json.load(f)
  assert m["modes_captured"] >= 23 and m["high_quality_percent"] > 90
  assert 0.2 < m["acceptance_rate"] < 0.6
  assert os.path.exists(tmp_path / "spread" / "samples.png")

  one = run(
    [
      f"--workdir={tmp_path / 'one'}",
      "--dataset=grid25",
      "--num_chains=1",
      "--samples_per_chain=500",
      "--thin=50",
      "--burn_in=500",
    ]
  )
  assert one.returncode == 0, one.stderr
  with open(tmp_path / "one" / "mode_metrics.json") as f:
    m = json.load(f)
  assert m["modes_captured"] <= 2 and m["num_modes"] == 25


def test_unknown_dataset_is_one_line(tmp_path):
  proc = run([f"--workdir={tmp_path}", "--dataset=grid9"])
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: ")
  assert "grid9" in proc.stderr
