r"""jaxgan vs PyTorch on the same device in one command: runs both benchmarks and prints the ratios.

  python benchmarks/compare.py --json_out=benchmarks/results/h100.json          # on the GPU machine
  python benchmarks/compare.py --reduced --single_thread                         # a CPU comparison

Runs ``step_throughput.py`` first (it resolves the mode and sizes: full on a
GPU, reduced otherwise), then ``torch_reference.py`` with exactly those sizes,
each in its own process so neither framework holds device memory the other
needs (JAX preallocates most of a GPU). Prints one table with both
frameworks' images/s and the ratio jaxgan / PyTorch (> 1: jaxgan is faster; the
same ratio by process CPU time per iteration, which a shared CPU's load does
not distort),
and writes both reports plus the merged rows to ``--json_out``.

``--single_thread`` runs both frameworks on one CPU thread
(``--xla_cpu_multi_thread_eigen=false`` for XLA, ``OMP_NUM_THREADS=1`` for
PyTorch); use it on a shared CPU, where PyTorch's spinning OpenMP threads
otherwise make its numbers meaningless. It changes nothing on a GPU's kernels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common as bc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = [
  ("model", "model", "s"),
  ("precision", "precision", "s"),
  ("batch", "batch_size", "d"),
  ("jaxgan ms/iter", "jax_ms_per_iter", ".2f"),
  ("PyTorch ms/iter", "torch_ms_per_iter", ".2f"),
  ("jaxgan CPU ms/iter", "jax_cpu_ms_per_iter", ".2f"),
  ("PyTorch CPU ms/iter", "torch_cpu_ms_per_iter", ".2f"),
  ("jaxgan images/s", "jax_images_per_s", ".0f"),
  ("PyTorch images/s", "torch_images_per_s", ".0f"),
  ("jaxgan / PyTorch", "ratio", ".2f"),
  ("same, by CPU time", "cpu_ratio", ".2f"),
  ("jaxgan GFLOP/iter", "jax_gflops_per_iter", ".4g"),
  ("jaxgan GFLOP/s", "jax_achieved_gflops_per_s", ".1f"),
  ("jaxgan MFU", "jax_mfu", ".1%"),
  ("jaxgan MFU vs TF32", "jax_mfu_vs_tf32", ".1%"),
  ("jaxgan compile s", "jax_compile_s", ".1f"),
]


def _run(script: str, argv: list[str], env: dict) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "report.json")
    cmd = [sys.executable, os.path.join(HERE, script), *argv, f"--json_out={out}"]
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
      raise SystemExit(f"error: {script} failed with exit status {proc.returncode}")
    with open(out) as f:
      return json.load(f)


def merge(jax_report: dict, torch_report: dict) -> list[dict]:
  """One row per case with both frameworks' numbers and images/s(jaxgan) / images/s(PyTorch)."""
  theirs = {(r["model"], r["precision"], r["batch_size"]): r for r in torch_report["cases"]}
  rows = []
  for r in jax_report["cases"]:
    t = theirs.get((r["model"], r["precision"], r["batch_size"]), {})
    row = {
      "model": r["model"],
      "precision": r["precision"],
      "batch_size": r["batch_size"],
      "jax_ms_per_iter": r["ms_per_iter"],
      "jax_images_per_s": r["images_per_s"],
      "jax_mfu": r["mfu"],
      "jax_mfu_vs_tf32": r.get("mfu_vs_tf32"),
      "jax_gflops_per_iter": r.get("gflops_per_iter"),
      "jax_achieved_gflops_per_s": r.get("achieved_gflops_per_s"),
      "jax_compile_s": r["compile_s"],
      "jax_cpu_ms_per_iter": r.get("cpu_ms_per_iter"),
      "torch_ms_per_iter": t.get("ms_per_iter"),
      "torch_cpu_ms_per_iter": t.get("cpu_ms_per_iter"),
      "torch_images_per_s": t.get("images_per_s"),
    }
    row["ratio"] = (r["images_per_s"] / t["images_per_s"]) if t.get("images_per_s") else None
    row["cpu_ratio"] = (t["cpu_ms_per_iter"] / r["cpu_ms_per_iter"]) if t.get("cpu_ms_per_iter") else None
    rows.append(row)
  return rows


def main(argv=None) -> None:
  parser = bc.make_parser(__doc__.splitlines()[0])
  parser.add_argument(
    "--single_thread", action="store_true", help="run both frameworks' CPU work on one thread (for shared CPUs)"
  )
  args = parser.parse_args(argv)
  passthrough = bc.argv_from_args(args)
  env = dict(os.environ)
  if args.single_thread:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
  jax_report = _run("step_throughput.py", passthrough, env)
  sizes = bc.resolved_argv(jax_report["config"])
  torch_report = _run("torch_reference.py", sizes, env)
  rows = merge(jax_report, torch_report)
  jm, tm = jax_report["meta"], torch_report["meta"]
  print(
    f"\njaxgan (jax {jm['jax']}) vs PyTorch {tm['torch']} eager, {jax_report['config']['mode']} mode, "
    f"{jm['device_kind']}" + (", one CPU thread each" if args.single_thread else "")
  )
  print(bc.format_table(rows, COLUMNS))
  if jax_report.get("multiseed"):
    print("\njaxgan: many seeds in one compiled step vs the same runs one after the other")
    print(bc.format_table(jax_report["multiseed"], bc.SEED_COLUMNS))
  bc.write_json(
    args.json_out, {"jax": jax_report, "torch": torch_report, "rows": rows, "single_thread": args.single_thread}
  )


if __name__ == "__main__":
  main()
