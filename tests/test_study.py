"""experiments/study.py end to end in fresh processes, and the pure half, jaxgan.studies.

One tiny study (the wgan.py script on grid25, 2 cells x 2 seeds vmapped, 20
iterations) is run once per module; the other tests copy its directory: an
interruption in the middle of the second cell resumes to the same table, a
bad cell flag or a failing cell is one error line naming the cell, and the
shipped study flag files are accepted cell by cell (--dry_run: every cell's
flags parsed and its run built by its script, nothing trained).
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from matplotlib.collections import PathCollection

from jaxgan import multiseed, recipes, studies
from jaxgan.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join(ROOT, "experiments", "study.py")
STUDIES_DIR = os.path.join(ROOT, "experiments", "flags", "studies")
TINY_BASE = """\
# a tiny WGAN-family run: 20 iterations of 8-unit MLPs
--g_widths=8
--d_widths=8
--batch_size=16
--num_steps=20
--log_every=10
--checkpoint_every=10
--sample_every=0
--lr=1e-3
"""
TINY_STUDY = """\
--script=wgan
--base_flagfile=tiny_base.flags
--datasets=grid25
--num_seeds=2
--cell=ns: --loss=non_saturating --n_critic=1
--cell=wgan_gp: --loss=wasserstein --gp_weight=0.1 --n_critic=2
--run_flags=--notensorboard --eval_samples=100
"""
CELLS = ("ns__grid25", "wgan_gp__grid25")


def run_study(args, check=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, STUDY, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
  if check and proc.returncode != 0:
    raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
  return proc


def error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith("error: ")]


def read_json(path):
  with open(path) as f:
    return json.load(f)


def without_timings(x):
  """results.json without what differs between two runs of the same flags: wall times and the resumed marks."""
  if isinstance(x, dict):
    return {k: without_timings(v) for k, v in x.items() if not k.startswith(("wall_time", "resumed"))}
  if isinstance(x, list):
    return [without_timings(v) for v in x]
  return x


def table_without_wall_time(markdown):
  """results.md with the last column (wall time) of every table row and the total wall-time line cut off."""
  return [
    line.rsplit("|", 2)[0] if line.startswith("|") else line
    for line in markdown.splitlines()
    if not line.startswith("Wall time of all cells together:")
  ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """The uninterrupted tiny study: (its flag file, its directory, the process)."""
  base = tmp_path_factory.mktemp("tiny_study")
  (base / "tiny_base.flags").write_text(TINY_BASE)
  (base / "tiny.flags").write_text(TINY_STUDY)
  out = base / "out"
  proc = run_study([f"--flagfile={base / 'tiny.flags'}", f"--workdir={out}"])
  return base / "tiny.flags", out, proc


def test_a_tiny_study_tabulates_every_seed(finished):
  _, out, proc = finished
  results = read_json(out / "results.json")
  assert results["study"] == "tiny" and results["mode"] == "vmapped" and results["seeds"] == [0, 1]
  assert results["metrics"] == ["modes_captured", "high_quality_percent", "reverse_kl"]
  assert [(r["cell"], r["dataset"]) for r in results["cells"]] == [("ns", "grid25"), ("wgan_gp", "grid25")]
  for row, name in zip(results["cells"], CELLS):
    assert row["iterations"] == [20, 20] and [r["seed"] for r in row["runs"]] == [0, 1]
    assert row["wall_time_sec"] > 0
    # The numbers are the script's own: seed k of its mode_metrics.json, the reported (EMA or raw) generator.
    raw = read_json(out / "cells" / name / "mode_metrics.json")
    assert raw["seeds"] == [0, 1]
    for metric in results["metrics"]:
      values = [r[r["reported"]][metric] for r in raw["runs"]]
      s = row["summary"][metric]
      assert s["values"] == values and s["n"] == 2
      assert s["mean"] == pytest.approx(np.mean(values), nan_ok=True)
      assert s["std"] == pytest.approx(np.std(values), nan_ok=True)
      assert (s["min"], s["max"]) == (min(values), max(values))
  assert len({r["summary"]["high_quality_percent"]["std"] for r in results["cells"]} - {0.0}) > 0, "no spread"

  markdown = (out / "results.md").read_text()
  assert "# Study tiny" in markdown and "## grid25" in markdown
  for row in results["cells"]:
    s = row["summary"]["high_quality_percent"]
    line = next(x for x in markdown.splitlines() if x.startswith(f"| {row['cell']} |"))
    assert studies.format_summary(s) in line and "2 seeds in one process" in line
  for metric in results["metrics"]:
    with open(out / f"{metric}.png", "rb") as f:
      assert f.read(4) == b"\x89PNG"
  assert "written:" in proc.stdout


def test_an_interrupted_study_resumes_to_the_same_table(finished, tmp_path):
  _, out, _ = finished
  flagfile = finished[0]
  copy = tmp_path / "out"
  shutil.copytree(out, copy)
  first, second = copy / "cells" / CELLS[0], copy / "cells" / CELLS[1]
  kept = {p: os.stat(first / p).st_mtime_ns for p in ("study_cell.json", "study_run.json", "mode_metrics.json")}
  # The state a kill during the second cell's last 10 iterations leaves: its checkpoint at step 10, no results,
  # no table.
  shutil.rmtree(second / "checkpoints" / "20")
  for name in ("study_cell.json", "study_run.json", "mode_metrics.json"):
    os.remove(second / name)
  for name in ("results.json", "results.md"):
    os.remove(copy / name)

  proc = run_study([f"--flagfile={flagfile}", f"--workdir={copy}"])
  assert f"cell ns on grid25: done (kept from {first / 'study_cell.json'})" in proc.stdout
  assert "resumed wgan_toy from step 10" in (second / "study_log.txt").read_text()
  assert {p: os.stat(first / p).st_mtime_ns for p in kept} == kept  # the done cell was not retrained
  assert without_timings(read_json(copy / "results.json")) == without_timings(read_json(out / "results.json"))
  assert table_without_wall_time((copy / "results.md").read_text()) == table_without_wall_time(
    (out / "results.md").read_text()
  )
  assert read_json(copy / "results.json")["cells"][1]["resumed"] is True


def test_a_bad_cell_flag_is_one_line_naming_the_cell(finished, tmp_path):
  flagfile = finished[0]
  workdir = tmp_path / "bad"
  proc = run_study([f"--flagfile={flagfile}", f"--workdir={workdir}", "--cell=oops: --loss=wassersteen"], check=False)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr
  assert (
    lines[0].startswith("error: cell oops on grid25: flag --loss=wassersteen") and "experiments/wgan.py" in lines[0]
  )
  assert not workdir.exists()  # checked before anything trains

  # A cell that fails while it runs (wgan.py refuses a batch that --pack does not divide): one line with the
  # cell, its log and the command that reruns it; the finished cells are kept.
  copy = tmp_path / "out"
  shutil.copytree(finished[1], copy)
  proc = run_study([f"--flagfile={flagfile}", f"--workdir={copy}", "--cell=odd: --batch_size=15 --pack=2"], check=False)
  errors = error_lines(proc.stderr)
  assert proc.returncode == 1 and len(errors) == 1, proc.stderr
  assert errors[0].startswith("error: cell odd on grid25 failed (exit 1): --batch_size=15 is not divisible")
  assert "rerun it alone: python experiments/wgan.py" in errors[0] and "study_log.txt" in errors[0]
  assert proc.stdout.count("done (kept from") == 2


@pytest.mark.parametrize(
  "study, extra, script, cells, datasets",
  [
    (
      "mode_collapse_2d",
      [],
      "wgan",
      ["gan_minimax", "gan_ns", "wgan_clip", "wgan_gp", "hinge_sn", "pacgan2", "rel_avg"],
      ["ring8", "grid25"],
    ),
    ("stacked_digits", ["--classifier_workdir={tmp}"], "dcgan", ["dcgan", "pacdcgan2", "wgan_gp", "sn_hinge"], []),
  ],
)
def test_shipped_studies_parse_and_every_cell_is_accepted_by_its_script(
  study, extra, script, cells, datasets, tmp_path
):
  workdir = tmp_path / "study"
  flagfile = os.path.join(STUDIES_DIR, f"{study}.flags")
  args = [f"--flagfile={flagfile}", f"--workdir={workdir}", "--dry_run", *(a.format(tmp=tmp_path) for a in extra)]
  proc = run_study(args)
  assert f"every cell's flags are accepted by experiments/{script}.py" in proc.stdout
  for cell in cells:
    for dataset in datasets or ["stacked_digits"]:
      assert f"cell {cell} on {dataset} (to run):" in proc.stdout
  assert f"{len(cells) * max(1, len(datasets))} of {len(cells) * max(1, len(datasets))} cells to run" in proc.stdout
  if script == "dcgan":  # one process per seed, each scored by evaluate.py (its flags parsed too)
    assert proc.stdout.count("python experiments/dcgan.py") == 3 * len(cells)
    assert proc.stdout.count("python experiments/evaluate.py") == 3 * len(cells)
  else:
    assert proc.stdout.count("--num_seeds=5") == len(cells) * len(datasets)
  assert not workdir.exists()


# ---------------------------------------------------------------------------- jaxgan.studies


def test_parse_cell():
  assert studies.parse_cell("wgan_gp: --loss=wasserstein --gp_weight=0.1") == studies.Cell(
    "wgan_gp", ("--loss=wasserstein", "--gp_weight=0.1")
  )
  assert studies.parse_cell("base:") == studies.Cell("base", ())
  cell = studies.parse_cell("q: --note='a b' --spectral_norm")
  assert cell.flags == ("--note=a b", "--spectral_norm")
  assert studies.parse_cell(cell.spec()) == cell
  for bad, expected in [
    ("no colon --x=1", "NAME, a colon"),
    ("a__b: --x=1", "without '__'"),
    ("c: loss=hinge", "is not a flag"),
    ("c: --x='unclosed", "cannot split"),
  ]:
    with pytest.raises(ConfigError, match=expected):
      studies.parse_cell(bad)
  assert studies.unit_dirname("dcgan", "/data/my set.npz") == "dcgan__my_set.npz"


def test_seed_k_of_a_vmapped_cell_equals_a_single_run_with_that_seed(finished, tmp_path):
  """The tiny study's vmapped cell `ns` against the same cell run one process per seed (--vmap_seeds=no): after
  its 10 and 20 iterations every leaf of seed k's state (parameters, optimiser state, EMA, step) is within
  rtol=1e-4, atol=1e-5 of the single-seed run's, the tolerance tests/test_multiseed.py defines (the vmapped
  matrix products sum in another order)."""
  base, out, _ = finished
  one_cell = TINY_STUDY.replace("--cell=wgan_gp: --loss=wasserstein --gp_weight=0.1 --n_critic=2\n", "")
  (base.parent / "one_cell.flags").write_text(one_cell)
  sequential = tmp_path / "sequential"
  run_study([f"--flagfile={base.parent / 'one_cell.flags'}", f"--workdir={sequential}", "--vmap_seeds=no"])
  assert read_json(out / "results.json")["mode"] == "vmapped"
  assert read_json(sequential / "results.json")["mode"] == "sequential"
  for step in (10, 20):
    stacked = recipes.load_run(str(out / "cells" / CELLS[0]), step).state
    for k in (0, 1):
      alone = recipes.load_run(str(sequential / "cells" / CELLS[0] / f"seed{k}"), step).state
      mine = multiseed.unstack_state(stacked, k)
      assert int(mine.step) == int(alone.step) == step
      leaves, alone_leaves = jax.tree.leaves(mine), jax.tree.leaves(alone)
      assert len(leaves) == len(alone_leaves)
      for x, y in zip(leaves, alone_leaves):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
  a, b = (multiseed.unstack_state(stacked, k).gen.params for k in (0, 1))
  assert not all(np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # two different runs


def test_image_and_cgan_runs_and_the_table_of_sequential_seeds(tmp_path):
  eval_json = {
    "step": 300,
    "parameters": "ema",
    "generated": {"num_samples": 100, "pixel_frechet_distance": 3.0, "pixel_precision": 0.5, "nn_class_counts": [1]},
  }
  evaluated = {"records": [{"metric": "stacked_modes", "value": 812.0}, {"metric": "kid", "value": 0.1, "std": 0.02}]}
  one = studies.image_run(eval_json, evaluated)
  assert one == {
    "step": 300,
    "parameters": "ema",
    "metrics": {"pixel_frechet_distance": 3.0, "pixel_precision": 0.5, "stacked_modes": 812.0, "kid": 0.1},
  }
  label = {"step": 5, "reported": "ema_params", "ema_params": {"accuracy": 0.9, "coverage": {"classes_covered": 10}}}
  assert studies.cgan_run(label)["metrics"] == {"accuracy": 0.9, "coverage/classes_covered": 10}

  runs = [
    {"seed": s, "step": 300, "metrics": {"stacked_modes": v, "fcd": f}}
    for s, v, f in [(0, 812, 2.0), (1, 790, 4.0), (2, 1000, 3.0)]
  ]
  units = [
    {"cell": "dcgan", "dataset": "stacked_digits", "flags": [], "mode": "sequential", "runs": runs,
     "wall_time_sec": 30.0, "wall_time_sec_per_run": [9.0, 10.0, 11.0]},
    {"cell": "pac2", "dataset": "stacked_digits", "flags": ["--pack=2"], "mode": "sequential", "runs": runs[:1],
     "wall_time_sec": 9.0, "wall_time_sec_per_run": [9.0]},
  ]  # fmt: skip
  assert studies.select_metrics(units) == ["stacked_modes", "fcd"]
  with pytest.raises(ConfigError, match="no run reports fid"):
    studies.select_metrics(units, ["fid"])
  header = {"study": "s", "script_path": "experiments/dcgan.py", "base_flagfile": "b.flags", "seeds": [0, 1, 2],
            "mode": "sequential"}  # fmt: skip
  results = studies.study_results(header, units, ["stacked_modes"])
  s = results["cells"][0]["summary"]["stacked_modes"]
  assert s["mean"] == pytest.approx(np.mean([812, 790, 1000])) and s["std"] == pytest.approx(np.std([812, 790, 1000]))
  markdown = studies.results_markdown(results)
  assert "| dcgan | (base) | 3 | 300 | 867.3 ± 94.24 [790, 1000] | 30 s (10 ± 1 per seed) |" in markdown
  assert "| pac2 | `--pack=2` | 1 | 300 | 812 | 9 s |" in markdown
  assert results["wall_time_sec"] == 39.0 and "Wall time of all cells together: 39 s (1 min)." in markdown
  fig = studies.strip_plot_figure(results, "stacked_modes")
  ax = fig.axes[0]
  assert (
    ax.get_ylabel() == "stacked_modes"
    and ax.get_title() == "stacked_digits"
    and "3 training seeds" in (fig._suptitle.get_text())
  )
  dots = [c for c in ax.collections if isinstance(c, PathCollection)]
  assert sum(len(c.get_offsets()) for c in dots) == 4  # every seed a dot
  assert studies.strip_plot(str(tmp_path / "m.png"), results, "stacked_modes").endswith("m.png")
