"""The one configuration language: every script's --help, every flag file, overlays.

One subprocess per training script imports it (its flags are defined at
import), reads what ``--help`` lists, and parses each of its flag files the
way `launch.run` does (nested ``--flagfile=`` expanded, absl validators run);
for flag files on offline data it also builds the run (`jaxgan.recipes.setup`,
no training), so a wrong width count or an unknown model fails here.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLAGS_DIR = ROOT / "experiments" / "flags"
SCRIPTS = ("gan", "dcgan", "cgan", "wgan", "pix2pix", "cyclegan")
OFFLINE = ("digits", "stacked_digits", "grid25", "ring8", "digits_edges")
# One name per concept: these must be the same flags in every script that has the concept.
SHARED = {"workdir", "seed", "num_steps", "batch_size", "log_every", "checkpoint_every", "sample_every", "tensorboard"}
SHARED |= {"g_widths", "d_widths", "optimizer", "lr", "d_lr", "b1", "b2", "lr_schedule", "decay_start", "loss"}
SHARED |= {"eval_samples", "allow_flag_changes", "skip_nonfinite", "spectral_norm"}
OLD_NAMES = {"width", "depth", "g_width", "g_depth", "g_hidden", "d_hidden", "base_features", "d_base_features"}
OLD_NAMES |= {"decay_steps", "eval_per_class", "num_eval", "num_fake", "grid_columns", "num_strip"}
OLD_NAMES |= {"translate_direction", "lambda_cycle", "lambda_identity", "train_split", "evaluate", "dropout_rate"}

PROBE = r"""
import io, json, os, runpy, sys
from absl import flags
sys.argv = [SCRIPT]
sys.modules["__main__"].__file__ = SCRIPT  # as when the script runs: its helpers sit beside the entry point
runpy.run_path(SCRIPT, run_name=SCRIPT)  # absl names the entry point's module by its path, sys.argv[0]
import launch
from jaxgan import recipes

FLAGS = flags.FLAGS
launch._list_script_flags_in_help()
out = {"reads": sorted(launch.resolved_flags()), "help": FLAGS.main_module_help(), "files": {}}
for path in FILES:
  FLAGS.unparse_flags()
  try:
    argv = [SCRIPT] + launch.expand_flagfiles([f"--flagfile={path}", "--workdir=/nonexistent/probe"])
    FLAGS(argv)
    cfg = launch.resolved_flags()
    built = False
    if cfg.get("dataset") in OFFLINE:
      recipes.setup(cfg, experiment=EXPERIMENT)
      built = True
    out["files"][path] = {"ok": True, "built": built, "cfg": {k: v for k, v in cfg.items() if k != "workdir"}}
  except Exception as e:
    out["files"][path] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
print("PROBE" + json.dumps(out, default=str))
"""


# Flag files named after a model rather than a script, by the script that runs them.
MODEL_FLAG_FILES = {"dcgan": ("sngan",)}


def flag_files(script: str) -> list[str]:
  prefixes = (script, *MODEL_FLAG_FILES.get(script, ()))
  return sorted(str(p) for prefix in prefixes for p in FLAGS_DIR.glob(f"{prefix}_*.flags"))


def probe(script: str, cwd: Path = ROOT) -> dict:
  experiment = {"wgan": "wgan_toy"}.get(script, script)
  code = (
    f"SCRIPT = {str(ROOT / 'experiments' / (script + '.py'))!r}\nFILES = {flag_files(script)!r}\n"
    f"OFFLINE = {OFFLINE!r}\nEXPERIMENT = {experiment!r}\n" + PROBE
  )
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=f"{ROOT / 'experiments'}{os.pathsep}{ROOT}")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
  lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE")]
  assert proc.returncode == 0 and lines, proc.stderr[-3000:]
  return json.loads(lines[-1][len("PROBE") :])


@pytest.fixture(scope="module", params=SCRIPTS)
def probed(request):
  return request.param, probe(request.param)


def _listed(help_text: str) -> set[str]:
  """The flags of absl's help text: lines ``  --name: ...`` or ``  --[no]name: ...`` (help continues indented)."""
  return {m.group(1) for m in re.finditer(r"^  --(?:\[no\])?([a-z_0-9]+):", help_text, re.MULTILINE)}


def test_help_lists_every_flag_the_script_reads_and_only_those(probed):
  script, out = probed
  listed = _listed(out["help"])
  assert listed == set(out["reads"]), (script, sorted(listed ^ set(out["reads"])))
  assert SHARED <= listed, (script, sorted(SHARED - listed))
  assert not listed & OLD_NAMES, (script, sorted(listed & OLD_NAMES))
  assert not any(n.startswith(("grain", "orbax", "tfds", "jax_", "xla")) or n == "verbosity" for n in listed)


def test_every_flag_file_parses_for_its_script(probed):
  script, out = probed
  assert out["files"], f"no flag files for {script}"
  bad = {Path(p).name: r["error"] for p, r in out["files"].items() if not r["ok"]}
  assert not bad, bad
  offline = [p for p, r in out["files"].items() if r["cfg"].get("dataset") in OFFLINE]
  assert all(out["files"][p]["built"] for p in offline)


def test_an_overlay_is_its_base_with_the_lines_below_it():
  out = probe("wgan", cwd=Path("/"))  # a nested --flagfile= is found beside its file from any directory
  base = out["files"][str(FLAGS_DIR / "wgan_gp_grid25.flags")]["cfg"]
  ring = out["files"][str(FLAGS_DIR / "wgan_gp_ring8.flags")]["cfg"]
  changed = {k for k in base if base[k] != ring[k]}
  assert changed == {"dataset", "g_widths", "lr", "num_steps"}
  assert ring["dataset"] == "ring8" and ring["g_widths"] == ["128", "128", "128"] and ring["gp_weight"] == 0.1


def test_a_missing_or_cyclic_flag_file_is_one_line(tmp_path):
  (tmp_path / "a.flags").write_text("--flagfile=b.flags\n--seed=1\n")
  (tmp_path / "b.flags").write_text("# comment\n--flagfile=a.flags\n")
  (tmp_path / "c.flags").write_text("--flagfile=nowhere.flags\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  for name, expected in (("a.flags", "includes itself"), ("c.flags", "nowhere.flags (named in")):
    proc = subprocess.run(
      [sys.executable, str(ROOT / "experiments" / "wgan.py"), f"--flagfile={tmp_path / name}", "--workdir=/tmp/x"],
      capture_output=True,
      text=True,
      env=env,
      timeout=120,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
