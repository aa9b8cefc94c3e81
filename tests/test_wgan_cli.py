"""experiments/wgan.py end to end in fresh processes: determinism, exact resume, bad input."""

import hashlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import test_tensorboard

from jaxgan import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "wgan.py")
TINY = [
  "--dataset=ring8",
  "--g_widths=16,16",
  "--d_widths=16,16",
  "--batch_size=32",
  "--n_critic=2",
  "--gp_weight=0.1",
  "--ema_decay=0.99",
  "--lr=1e-3",
  "--log_every=5",
  "--checkpoint_every=10",
  "--sample_every=0",
  "--eval_samples=200",
  "--seed=7",
]


def run(args, check=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
  if check and proc.returncode != 0:
    raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
  return proc


def final_state(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return ocp.StandardCheckpointer().restore(path)


def assert_bit_identical(a, b):
  la, lb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
  assert [p for p, _ in la] == [p for p, _ in lb]
  assert len(la) > 10
  for (path, x), (_, y) in zip(la, lb):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape, path
    assert x.tobytes() == y.tobytes(), f"{jax.tree_util.keystr(path)} differs"


def snapshot(directory):
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


def test_same_seed_same_bits_in_two_processes(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  run([*TINY, "--num_steps=20", "--sample_every=10", f"--workdir={a}"])  # figures do not change the bits
  run([*TINY, "--num_steps=20", f"--workdir={b}"])
  assert_bit_identical(final_state(a, 20), final_state(b, 20))
  c = tmp_path / "c"
  run([*TINY, "--num_steps=20", "--seed=8", "--notensorboard", f"--workdir={c}"])
  with pytest.raises(AssertionError):
    assert_bit_identical(final_state(a, 20), final_state(c, 20))

  # TensorBoard: train scalars with both learning rates, the final evaluation under eval/, the sample figures.
  tags = {}
  for path in test_tensorboard.event_files(a):
    for tag, points in test_tensorboard.summaries(test_tensorboard.read_events(path)).items():
      tags.setdefault(tag, []).extend(points)
  assert [s for s, _ in tags["train/d_loss"]] == [5, 10, 15, 20]
  assert [v for _, v in tags["train/g_lr"]] == pytest.approx([1e-3] * 4)
  assert [v for _, v in tags["train/d_lr"]] == pytest.approx([1e-3] * 4)
  with open(a / "mode_metrics.json") as f:
    modes_captured = json.load(f)["ema"]["modes_captured"]
  assert tags["eval/ema/modes_captured"] == [(20, modes_captured)]
  assert "eval/generator/high_quality_percent" in tags
  images = [tag for tag in tags if tag.startswith("samples/")]
  assert images and all([s for s, _ in tags[t]] == [10, 20] for t in images), {t: tags[t] for t in images}
  assert all(img.height > 100 and img.encoded_image_string[:4] == b"\x89PNG" for t in images for _, img in tags[t])
  assert not os.path.exists(c / trainer.TENSORBOARD_DIR)


def test_resume_is_bit_exact(tmp_path):
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  out = run([*TINY, "--num_steps=30", f"--workdir={straight}"])
  run([*TINY, "--num_steps=15", "--checkpoint_every=15", f"--workdir={resumed}"])
  second = run([*TINY, "--num_steps=30", f"--workdir={resumed}"])
  assert "resumed wgan_toy from step 15" in second.stderr
  assert_bit_identical(final_state(straight, 30), final_state(resumed, 30))
  # The printed evaluation is identical too.
  assert out.stdout.splitlines()[-1].split("(")[0] == second.stdout.splitlines()[-1].split("(")[0]


def test_flagfile_reproduces_the_documented_job(tmp_path):
  run(
    [
      f"--flagfile={ROOT}/experiments/flags/wgan_gp_ring8.flags",
      "--num_steps=3",
      "--g_widths=16",
      "--d_widths=16",
      "--log_every=1",
      "--checkpoint_every=3",
      "--sample_every=3",
      "--eval_samples=100",
      f"--workdir={tmp_path}",
    ]
  )
  for name in (
    "metrics.jsonl",
    "mode_metrics.json",
    "flags.json",
    "loss_curves.png",
    os.path.join("samples", "step_0000003.png"),
  ):
    assert (tmp_path / name).exists(), name


@pytest.mark.parametrize(
  "bad, expected",
  [
    (["--loss=wassersteen"], "--loss"),
    (["--n_critic=-1"], "n_critic"),
    (["--flagfile=/nonexistent/run.flags"], "/nonexistent/run.flags"),
  ],
)
def test_bad_flags_fail_with_one_line(tmp_path, bad, expected):
  workdir = tmp_path / "w"
  proc = run([*TINY, "--num_steps=2", f"--workdir={workdir}", *bad], check=False)
  assert proc.returncode != 0
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
  assert not workdir.exists()


def test_checkpoint_of_another_model_is_refused_untouched(tmp_path):
  run([*TINY, "--num_steps=10", f"--workdir={tmp_path}"])
  before = snapshot(tmp_path)
  proc = run([*TINY, "--num_steps=20", "--d_widths=32,32", f"--workdir={tmp_path}"], check=False)
  assert proc.returncode != 0
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "different model" in errors[0] and "--workdir" in errors[0], proc.stderr
  assert snapshot(tmp_path) == before
