"""Short runs of every experiment, summarised for the regression test and for refactor digests.

Each entry of `RUNS` is a few iterations of one experiment script with its
committed flag file (so the real recipe, not a test model, is what is pinned).
`summarise` reads the run's final checkpoint and metrics back and returns:

* ``leaf_digests``: sha256 of every state leaf's bytes, keyed by its path --
  bit-for-bit identity, for comparing one machine with itself before and after
  a refactor;
* ``metrics``: the last metrics.jsonl record (timings dropped);
* ``norms``: the L2 norm of every network's parameters;
* ``values``: a few parameter values of every network's first and last kernel;

the last three are what `tests/test_regression.py` pins with a tolerance.

  python tests/regression_runs.py record OUT.json [NAME ...]
  python tests/regression_runs.py compare A.json B.json
  python tests/regression_runs.py pin [NAME ...]

``record`` runs the named runs (default: all) and writes their summaries;
``compare`` reports which runs' digests differ between two recordings;
``pin`` rewrites `GOLDEN` (the values `tests/test_regression.py` checks) from
fresh runs -- only when a change of the maths is deliberate, and say which
run changed and why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reliability_harness as h  # noqa: E402

ROOT = h.ROOT
FLAGS_DIR = os.path.join(ROOT, "experiments", "flags")
GOLDEN = os.path.join(ROOT, "tests", "golden", "regression.json")
SHORT = ["--sample_every=0", "--keep_checkpoints=1"]


def _flagfile(name: str) -> str:
  return f"--flagfile={os.path.join(FLAGS_DIR, name + '.flags')}"


# name -> (script, arguments); --workdir (and --classifier_workdir for cgan.py) are added by `run`.
RUNS: dict[str, tuple[str, list[str]]] = {
  "wgan_gp_grid25": (
    "wgan.py",
    [
      _flagfile("wgan_gp_grid25"),
      "--lr=1e-4",  # the maths pinned before the recipe moved to lr 3e-4 (a recipe change, not a code change)
      "--num_steps=20",
      "--log_every=10",
      "--checkpoint_every=20",
      "--eval_samples=500",
      *SHORT,
    ],
  ),
  "wgan_gp_grid25_2seeds": (
    "wgan.py",
    [
      _flagfile("wgan_gp_grid25"),
      "--lr=1e-4",  # the maths pinned before the recipe moved to lr 3e-4 (a recipe change, not a code change)
      "--num_steps=20",
      "--log_every=10",
      "--checkpoint_every=20",
      "--eval_samples=500",
      "--num_seeds=2",
      *SHORT,
    ],
  ),
  "wgan_clip_grid25": (
    "wgan.py",
    [
      _flagfile("wgan_clip_grid25"),
      "--num_steps=20",
      "--log_every=10",
      "--checkpoint_every=20",
      "--eval_samples=500",
      *SHORT,
    ],
  ),
  "wgan_gp_ring8_pack2": (
    "wgan.py",
    [
      _flagfile("wgan_gp_ring8"),
      "--lr=1e-4",  # the maths pinned before the recipe moved to 2e-4 and batch 128 (a recipe change, not code)
      "--batch_size=256",
      "--num_steps=20",
      "--log_every=10",
      "--checkpoint_every=20",
      "--eval_samples=500",
      "--pack=2",
      *SHORT,
    ],
  ),
  "gan_digits": (
    "gan.py",
    [_flagfile("gan_digits"), "--num_steps=10", "--log_every=5", "--checkpoint_every=10", "--eval_samples=100", *SHORT],
  ),
  "dcgan_digits": (
    "dcgan.py",
    [
      _flagfile("dcgan_digits"),
      "--num_steps=10",
      "--log_every=5",
      "--checkpoint_every=10",
      "--eval_samples=100",
      *SHORT,
    ],
  ),
  "dcgan_mnist_variant_digits": (
    "dcgan.py",
    [
      _flagfile("dcgan_mnist"),
      "--dataset=digits",
      "--image_size=8",
      "--g_widths=32,8,4",
      "--d_widths=8,8,16",
      "--batch_size=32",
      "--num_steps=6",
      "--log_every=3",
      "--checkpoint_every=6",
      "--eval_samples=100",
      *SHORT,
    ],
  ),
  "cgan_digits": (
    "cgan.py",
    [
      _flagfile("cgan_digits"),
      "--num_steps=10",
      "--log_every=5",
      "--checkpoint_every=10",
      "--eval_samples=50",
      *SHORT,
    ],
  ),
  "cgan_digits_r1_ncritic2": (
    "cgan.py",
    [
      _flagfile("cgan_digits"),
      "--num_steps=6",
      "--log_every=3",
      "--checkpoint_every=6",
      "--eval_samples=50",
      "--r1_weight=10",
      "--n_critic=2",
      "--real_label=0.9",
      *SHORT,
    ],
  ),
  "pix2pix_digits_edges": (
    "pix2pix.py",
    [
      _flagfile("pix2pix_digits_edges"),
      "--num_steps=6",
      "--log_every=3",
      "--checkpoint_every=6",
      "--eval_samples=16",
      *SHORT,
    ],
  ),
  "cyclegan_digits": (
    "cyclegan.py",
    [
      _flagfile("cyclegan_digits"),
      "--num_steps=6",
      "--log_every=3",
      "--checkpoint_every=6",
      "--eval_samples=16",
      *SHORT,
    ],
  ),
}


def classifier(directory: str) -> str:
  """A one-epoch digits classifier in ``directory`` (cgan.py's evaluation needs one; training does not use it)."""
  if not os.path.exists(os.path.join(directory, "classifier.json")):
    subprocess.run(
      [
        sys.executable,
        os.path.join(ROOT, "experiments", "train_classifier.py"),
        "--dataset=digits",
        "--epochs=1",
        f"--workdir={directory}",
      ],
      check=True,
      capture_output=True,
      env=h.env(),
      cwd=ROOT,
      timeout=600,
    )
  return directory


def run(name: str, workdir: str, classifier_workdir: str | None = None) -> subprocess.CompletedProcess:
  script, args = RUNS[name]
  extra = [f"--classifier_workdir={classifier_workdir}"] if script == "cgan.py" and classifier_workdir else []
  proc = subprocess.run(
    [sys.executable, os.path.join(ROOT, "experiments", script), *args, *extra, f"--workdir={workdir}"],
    capture_output=True,
    text=True,
    env=h.env(),
    cwd=ROOT,
    timeout=900,
  )
  if proc.returncode != 0:
    raise AssertionError(f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
  return proc


def _nets(flat: dict[str, np.ndarray]) -> dict[str, list[str]]:
  """Parameter leaves grouped by network: the path up to "params" (e.g. "gen", "g_ab")."""
  groups: dict[str, list[str]] = {}
  for path in sorted(flat):
    parts = path.split("/")
    if "params" in parts and "opt_state" not in parts:
      net = "/".join(parts[: parts.index("params")])
      groups.setdefault(net, []).append(path)
  return groups


def summarise(workdir: str) -> dict:
  checkpoints = h.restore_all(workdir)
  step = max(checkpoints)
  flat = checkpoints[step][0]
  leaf_digests = {
    k: hashlib.sha256(f"{v.dtype.str}{v.shape}".encode() + np.ascontiguousarray(v).tobytes()).hexdigest()[:16]
    for k, v in sorted(flat.items())
  }
  norms, values = {}, {}
  for net, paths in _nets(flat).items():
    norms[net] = float(np.sqrt(sum(float(np.sum(flat[p].astype(np.float64) ** 2)) for p in paths)))
    kernels = [p for p in paths if p.endswith("kernel")]
    for p in (kernels[0], kernels[-1]) if kernels else ():
      values[p] = [float(v) for v in flat[p].reshape(-1)[:4]]
  last = h.metrics(workdir)[-1]
  return {"step": step, "leaf_digests": leaf_digests, "metrics": last, "norms": norms, "values": values}


def record(out_path: str, names: list[str]) -> dict:
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    clf = classifier(os.path.join(tmp, "clf"))
    for name in names:
      workdir = os.path.join(tmp, name)
      run(name, workdir, clf)
      results[name] = summarise(workdir)
      print(name, "done", flush=True)
  with open(out_path, "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  return results


def pinned(summary: dict) -> dict:
  """What the regression test pins of a summary: final metrics, parameter norms and values (no digests)."""
  return {k: summary[k] for k in ("step", "metrics", "norms", "values")}


def pin(names: list[str]) -> None:
  with tempfile.TemporaryDirectory() as tmp:
    results = record(os.path.join(tmp, "all.json"), names)
  golden = {}
  if os.path.exists(GOLDEN):
    with open(GOLDEN) as f:
      golden = json.load(f)
  golden.update({name: pinned(summary) for name, summary in results.items()})
  os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
  with open(GOLDEN, "w") as f:
    json.dump(golden, f, indent=1, sort_keys=True)
    f.write("\n")


def compare(a_path: str, b_path: str) -> int:
  with open(a_path) as f:
    a = json.load(f)
  with open(b_path) as f:
    b = json.load(f)
  changed = 0
  for name in sorted(set(a) | set(b)):
    if name not in a or name not in b:
      print(f"{name}: only in {'A' if name in a else 'B'}")
      continue
    da, db = a[name]["leaf_digests"], b[name]["leaf_digests"]
    same_values = sorted(da.values()) == sorted(db.values())
    if da == db:
      print(f"{name}: identical ({len(da)} leaves)")
      continue
    changed += 1
    differ = [k for k in da if k in db and da[k] != db[k]]
    print(
      f"{name}: DIFFERENT ({len(differ)} leaves differ, {len(set(da) ^ set(db))} paths not in both; "
      f"same multiset of leaf values: {same_values})"
    )
    for k in differ[:5]:
      print(f"   {k}")
  return changed


if __name__ == "__main__":
  if sys.argv[1] == "record":
    record(sys.argv[2], sys.argv[3:] or list(RUNS))
  elif sys.argv[1] == "pin":
    pin(sys.argv[2:] or list(RUNS))
  elif sys.argv[1] == "compare":
    sys.exit(1 if compare(sys.argv[2], sys.argv[3]) else 0)
  else:
    raise SystemExit(f"unknown command {sys.argv[1]}")
