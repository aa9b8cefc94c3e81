"""Preemption, one writer per workdir, and resume that refuses silent changes (experiments/wgan.py, real processes).

The subject is the tiny WGAN-GP of `reliability_harness.WGAN_TINY` and its
uninterrupted 40-iteration reference run (every checkpoint kept).

* SIGTERM and SIGINT at several moments -- while starting, while training and
  inside a checkpoint write -- end the run with one line, exit code 128 +
  the signal, and a checkpoint of the step reached; rerunning the same
  command ends with the same bits as the reference run.
* A second run on a workdir in use stops with one line naming the holder and
  changes nothing; a killed run's lock does not block the rerun.
* Resuming with a flag that changes the training is one line listing the
  change, unless --allow_flag_changes (recorded in flags_history.jsonl).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import reliability_harness as h

STEPS = h.REFERENCE_STEPS
ARGS = [*h.REFERENCE_ARGS]
SLOW_SAVE = {"JAXGAN_TEST_SLOW_SAVE_SECONDS": "0.3"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return h.reference_run(tmp_path_factory)


def _start(workdir, extra_env=None, args=ARGS):
  return subprocess.Popen(
    [sys.executable, h.WGAN, *args, f"--workdir={workdir}"],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=h.env(**(extra_env or {})),
    cwd=h.ROOT,
  )


def _wait_for(proc, condition, limit=240.0):
  started = time.monotonic()
  while proc.poll() is None and not condition() and time.monotonic() - started < limit:
    time.sleep(0.005)
  assert proc.poll() is None, f"the run ended before the signal: {proc.communicate()[1][-2000:]}"


def _tmp_dirs(workdir):
  d = os.path.join(workdir, "checkpoints")
  return [n for n in os.listdir(d) if "orbax-checkpoint-tmp" in n] if os.path.isdir(d) else []


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, reference):
  """Four signals to the reference command, then the same command to the end."""
  workdir = str(tmp_path_factory.mktemp("preempt") / "run")
  flags_json = os.path.join(workdir, "flags.json")
  log = []
  for sig, moment in [
    (signal.SIGTERM, "training"),
    (signal.SIGINT, "in_save"),
    (signal.SIGTERM, "in_save"),
    (signal.SIGINT, "training"),
  ]:
    before = h.listed_steps(workdir)
    launched = time.time()
    proc = _start(workdir, SLOW_SAVE)
    _wait_for(proc, lambda t=launched: os.path.exists(flags_json) and os.path.getmtime(flags_json) >= t)
    if moment == "in_save":
      target = ((before[-1] if before else 0) // 5 + 1) * 5  # the next regular save (every 5)
      _wait_for(proc, lambda target=target: any(n.startswith(f"{target}.") for n in _tmp_dirs(workdir)))
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=240)
    errors = h.error_lines(stderr)
    listed = h.listed_steps(workdir)
    log.append(dict(signal=sig.name, moment=moment, code=proc.returncode, errors=errors, listed=listed, stderr=stderr))
  proc = h.run_wgan([*ARGS, f"--workdir={workdir}"])
  return {"workdir": workdir, "log": log, "stdout": proc.stdout}


def test_signals_save_a_checkpoint_and_end_with_one_line(interrupted_run, reference):
  for entry in interrupted_run["log"]:
    code = 128 + signal.Signals[entry["signal"]].value
    assert entry["code"] == code, entry["stderr"][-2000:]
    assert len(entry["errors"]) == 1, entry["stderr"][-2000:]
    line = entry["errors"][0]
    assert f"interrupted by {entry['signal']} at step" in line and "rerun the same command to resume" in line
    step = int(line.split(" at step ")[1].split(";")[0])
    assert entry["listed"][-1] == step  # the step reached was saved
    assert "Traceback" not in entry["stderr"]
  # Every step saved on the regular cadence is the reference's, bit for bit (the reference keeps those only).
  final = h.restore_all(interrupted_run["workdir"])
  assert any(s % 5 for s in final)  # steps saved on a signal are listed too
  for s, (state, _) in final.items():
    if s in reference["checkpoints"]:
      h.assert_bit_identical(state, reference["checkpoints"][s])


def test_resumed_after_signals_the_run_ends_with_the_same_bits(interrupted_run, reference):
  workdir = interrupted_run["workdir"]
  h.assert_bit_identical(h.restore_step(workdir, STEPS), reference["checkpoints"][STEPS])
  # The interrupted runs flushed their metrics at the step they stopped: more records, one per window.
  steps = [r["step"] for r in h.metrics(workdir)]
  assert steps == sorted(set(steps)) and {r["step"] for r in reference["metrics"]} <= set(steps)
  assert interrupted_run["stdout"].strip().splitlines()[-1].split("(")[0] == reference["summary"]


# ---------------------------------------------------------------------------- one writer per workdir


HOLDER = """
import sys, time
from jaxgan import trainer
lock = trainer.WorkdirLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_process_on_a_locked_workdir_changes_nothing(reference, tmp_path):
  workdir = tmp_path / "run"
  import shutil

  shutil.copytree(reference["workdir"], workdir)
  holder = subprocess.Popen(
    [sys.executable, "-c", HOLDER, str(workdir)], stdout=subprocess.PIPE, text=True, env=h.env(), cwd=h.ROOT
  )
  try:
    assert holder.stdout.readline().strip() == "held"
    before = h.snapshot(str(workdir))
    proc = h.run_wgan([*ARGS, "--num_steps=45", f"--workdir={workdir}"], check=False)
    errors = h.error_lines(proc.stderr)
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-2000:]
    assert f"is in use by another run (pid {holder.pid} on " in errors[0] and "--workdir" in errors[0]
    assert h.snapshot(str(workdir)) == before
  finally:
    holder.kill()
    holder.wait()
  # The holder was killed: its lock went with it, and the same command now runs.
  proc = h.run_wgan([*ARGS, "--num_steps=45", f"--workdir={workdir}"])
  assert h.listed_steps(str(workdir))[-1] == 45


def test_two_real_runs_on_one_workdir_one_stops_at_once(tmp_path):
  workdir = tmp_path / "run"
  first = _start(workdir, SLOW_SAVE, [*ARGS, "--num_steps=30"])
  try:
    _wait_for(first, lambda: os.path.exists(workdir / "flags.json"))
    second = h.run_wgan([*ARGS, "--num_steps=30", f"--workdir={workdir}"], check=False)
    errors = h.error_lines(second.stderr)
    assert second.returncode == 1 and len(errors) == 1 and f"pid {first.pid}" in errors[0], second.stderr[-2000:]
  finally:
    _, stderr = first.communicate(timeout=240)
  assert first.returncode == 0, stderr[-2000:]
  steps = [r["step"] for r in h.metrics(str(workdir))]
  assert steps == sorted(set(steps)) and steps[-1] == 30  # one writer: no interleaved records


# ---------------------------------------------------------------------------- resume with changed flags


def test_resume_with_changed_training_flags_is_refused_or_recorded(reference, tmp_path):
  import shutil

  workdir = tmp_path / "run"
  shutil.copytree(reference["workdir"], workdir)
  before = h.snapshot(str(workdir))
  proc = h.run_wgan([*ARGS, "--num_steps=45", "--lr=2e-3", "--n_critic=3", f"--workdir={workdir}"], check=False)
  errors = h.error_lines(proc.stderr)
  assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-2000:]
  assert "--lr 0.001 -> 0.002" in errors[0] and "--n_critic 2 -> 3" in errors[0]
  assert "fresh --workdir" in errors[0] and "--allow_flag_changes" in errors[0]
  assert h.snapshot(str(workdir)) == before
  # Neutral flags (length, cadences, kept count) may change freely.
  h.run_wgan([*ARGS, "--num_steps=45", "--log_every=3", "--keep_checkpoints=4", f"--workdir={workdir}"])
  assert h.listed_steps(str(workdir))[-1] == 45
  # The opt-in records the change, and flags.json describes the new checkpoints.
  h.run_wgan([*ARGS, "--num_steps=50", "--lr=2e-3", "--allow_flag_changes", f"--workdir={workdir}"])
  with open(workdir / "flags_history.jsonl") as f:
    history = [json.loads(line) for line in f]
  assert len(history) == 1 and history[0]["step"] == 45 and history[0]["changed"]["lr"] == [0.001, 0.002]
  assert json.loads((workdir / "flags.json").read_text())["lr"] == 0.002
  assert h.restore_all(str(workdir))[50][1]["flags"]["lr"] == 0.002


def test_a_renamed_step_directory_is_refused_and_kept(reference, tmp_path):
  import shutil

  workdir = tmp_path / "run"
  shutil.copytree(reference["workdir"], workdir)
  os.rename(workdir / "checkpoints" / "40", workdir / "checkpoints" / "400")
  before = h.snapshot(str(workdir))
  proc = h.run_wgan([*ARGS, "--num_steps=45", f"--workdir={workdir}"], check=False)
  errors = h.error_lines(proc.stderr)
  assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-2000:]
  assert "holds step 40, not 400 (it was renamed or copied)" in errors[0] and "nothing was changed" in errors[0]
  assert h.snapshot(str(workdir)) == before


def test_sigterm_to_one_of_two_processes_saves_the_same_step_on_both(tmp_path):
  """Multi-process: SIGTERM reaches one process (a scheduler preempting one host); JAX's preemption
  synchronisation makes both processes stop at the same step and save it together."""
  workdir = tmp_path / "run"
  address = f"127.0.0.1:{h.free_port()}"
  procs = [
    subprocess.Popen(
      [sys.executable, h.WGAN, *ARGS, "--num_steps=200", f"--workdir={workdir}", f"--coordinator_address={address}"]
      + ["--num_processes=2", f"--process_id={i}"],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env=h.env(**SLOW_SAVE),
      cwd=h.ROOT,
    )
    for i in (0, 1)
  ]
  try:
    _wait_for(procs[0], lambda: len(h.metrics(str(workdir))) >= 2 if (workdir / "metrics.jsonl").exists() else False)
    procs[0].send_signal(signal.SIGTERM)
    results = [p.communicate(timeout=240) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  lines = [h.error_lines(err) for _, err in results]
  assert [p.returncode for p in procs] == [143, 143], [err[-2000:] for _, err in results]
  steps = {int(errs[0].split(" at step ")[1].split(";")[0]) for errs in lines}
  assert len(steps) == 1, lines
  (step,) = steps
  saved = h.restore_all(str(workdir))
  assert max(saved) == step and saved[step][1]["data_states"] == [{"position": step}, {"position": step}]
