"""The step benchmarks run end to end at a tiny size and keep their JSON fields (so they cannot rot)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCH)

import bench_common as bc  # noqa: E402
import compare  # noqa: E402

CASE_FIELDS = (
  "ms_per_iter",
  "ms_per_iter_min",
  "cpu_ms_per_iter",
  "gen_iters_per_s",
  "images_per_s",
  "compile_s",
  "flops_per_iter",
  "achieved_gflops_per_s",
  "mfu",
  "finite",
)


def _run_script(script, tmp_path, *args, env=None):
  """Runs benchmarks/``script`` with ``args`` and ``--json_out``; returns (its JSON report, its stdout)."""
  out = tmp_path / f"{script}.json"
  proc = subprocess.run(
    [sys.executable, os.path.join(BENCH, script), *args, f"--json_out={out}"],
    capture_output=True,
    text=True,
    timeout=300,
    env=env,
    cwd=ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out) as f:
    return json.load(f), proc.stdout


def _run(script, tmp_path, *args):
  """A step benchmark at its ``--tiny`` size, one OpenMP thread."""
  return _run_script(script, tmp_path, "--tiny", *args, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_step_throughput_tiny(tmp_path):
  report, stdout = _run("step_throughput.py", tmp_path, "--seed_models=toy_wgan_gp")
  assert report["config"]["mode"] == "tiny" and report["meta"]["backend"] == "cpu"
  assert [(c["model"], c["precision"], c["batch_size"]) for c in report["cases"]] == [
    ("dcgan", "float32", 4),
    ("wgan_gp", "float32", 4),
  ]
  for case in report["cases"]:
    assert set(CASE_FIELDS) <= set(case)
    assert case["finite"] and case["ms_per_iter"] > 0 and case["compile_s"] > 0
    assert case["images_per_s"] == pytest.approx(case["n_critic"] * 4 * case["gen_iters_per_s"])
    # n_critic D steps + one G step; the scanned train step alone is counted with the loop body once.
    assert case["flops_per_iter"] == case["n_critic"] * case["d_step_flops"] + case["g_step_flops"] > 0
    assert case["mfu"] is None  # no MFU on a CPU
  wgan = report["cases"][1]
  assert wgan["flops_per_iter"] > 2 * wgan["g_step_flops"]
  (seeds,) = report["multiseed"]
  assert seeds["model"] == "toy_wgan_gp" and seeds["num_seeds"] == 2 and seeds["finite"]
  assert seeds["vmapped_seed_iters_per_s"] > 0 and seeds["sequential_seed_iters_per_s"] > 0
  assert seeds["cpu_speedup"] > 0
  assert "| dcgan | float32 | 4 |" in stdout


def test_shared_flags_and_peaks():
  args = bc.make_parser("t").parse_args(["--reduced", "--batch_sizes=2,3", "--precisions=bfloat16"])
  cfg = bc.resolve(args, has_gpu=True)
  assert cfg["mode"] == "reduced" and cfg["batch_sizes"] == (2, 3) and cfg["precisions"] == ("bfloat16",)
  assert bc.resolve(bc.make_parser("t").parse_args([]), has_gpu=True)["batch_sizes"] == (64, 256)
  assert bc.resolve(bc.make_parser("t").parse_args([]), has_gpu=False)["mode"] == "reduced"
  again = bc.resolve(bc.make_parser("t").parse_args(bc.argv_from_args(args)), has_gpu=False)
  assert again == cfg
  assert bc.peak_for("NVIDIA H100 80GB HBM3") == ("H100 SXM", bc.PEAKS["H100 SXM"])
  assert bc.peak_for("NVIDIA H100 PCIe")[0] == "H100 PCIe"
  assert bc.peak_for("cpu") == (None, None)
  with pytest.raises(SystemExit):
    bc.make_parser("t").parse_args(["--models=stylegan"])


def test_compare_merge_ratio():
  jax_report = {
    "cases": [
      {
        "model": "dcgan",
        "precision": "float32",
        "batch_size": 64,
        "ms_per_iter": 2.0,
        "images_per_s": 300.0,
        "mfu": 0.1,
        "compile_s": 3.0,
        "cpu_ms_per_iter": 1.0,
      }
    ]
  }
  torch_report = {
    "cases": [
      {
        "model": "dcgan",
        "precision": "float32",
        "batch_size": 64,
        "ms_per_iter": 4.0,
        "images_per_s": 100.0,
        "cpu_ms_per_iter": 5.0,
      }
    ]
  }
  (row,) = compare.merge(jax_report, torch_report)
  assert row["ratio"] == pytest.approx(3.0) and row["torch_ms_per_iter"] == 4.0
  assert row["cpu_ratio"] == pytest.approx(5.0)


def test_torch_reference_tiny(tmp_path):
  pytest.importorskip("torch")
  report, _ = _run("torch_reference.py", tmp_path, "--models=dcgan,wgan_gp")
  assert report["meta"]["framework"] == "torch"
  assert [c["model"] for c in report["cases"]] == ["dcgan", "wgan_gp"]
  for case in report["cases"]:
    assert case["finite"] and case["images_per_s"] > 0 and case["ms_per_iter"] > 0
    assert case["cpu_ms_per_iter"] > 0 and case["repeats"] == 1


def test_toy_loop_tiny(tmp_path):
  """benchmarks/toy_loop.py on a tiny overlay of the grid recipe: both sides run and the ratio is reported."""
  recipe = tmp_path / "tiny.flags"
  grid = os.path.join(ROOT, "experiments", "flags", "wgan_gp_grid25.flags")
  recipe.write_text(f"--flagfile={grid}\n--g_widths=8,8\n--d_widths=8\n--batch_size=16\n")
  report, stdout = _run_script(
    "toy_loop.py", tmp_path, f"--flagfile={recipe}", "--iterations=20", "--fuse=10", "--repeats=1"
  )
  assert report["bare_ms_per_iteration"] > 0 and report["jaxgan_ms_per_iteration"] > 0
  assert report["ratio"] == pytest.approx(report["jaxgan_ms_per_iteration"] / report["bare_ms_per_iteration"])
  assert "jaxgan / bare" in stdout


def test_unroll_tiny(tmp_path):
  """benchmarks/unroll.py on a tiny overlay of the digits DCGAN: both programs run and the ratio is reported."""
  recipe = tmp_path / "tiny.flags"
  base = os.path.join(ROOT, "experiments", "flags", "dcgan_digits.flags")
  recipe.write_text(f"--flagfile={base}\n--g_widths=4\n--d_widths=4\n--batch_size=8\n--n_critic=2\n")
  report, _ = _run_script(
    "unroll.py",
    tmp_path,
    "--script=dcgan",
    f"--flagfile={recipe}",
    "--iterations=2",
    "--repeats=1",
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  ms = {k: v["ms_per_iteration"] for k, v in report["results"].items()}
  assert set(ms) == {"inlined", "scanned"} and min(ms.values()) > 0
  assert report["ratio"] == pytest.approx(ms["scanned"] / ms["inlined"])
