"""Crash safety of training: SIGKILL at random moments, corrupt and truncated checkpoints.

The subject is the tiny WGAN-GP of `reliability_harness.WGAN_TINY` (40
iterations, a checkpoint every 5, the last 3 kept). The uninterrupted
reference run keeps every checkpoint, so each step a crashed run lists can be
compared with the same step of the reference, bit for bit.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import optax
import pytest
import reliability_harness as h

STEPS = h.REFERENCE_STEPS
ARGS = [*h.REFERENCE_ARGS, "--keep_checkpoints=3"]  # pruning happens too (the last flag wins)
KEPT = list(range(STEPS - 10, STEPS + 1, 5))
SLOW_SAVE = {"JAXGAN_TEST_SLOW_SAVE_SECONDS": "0.2"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return h.reference_run(tmp_path_factory)


def _tmp_dirs(workdir):
  d = os.path.join(workdir, "checkpoints")
  return [n for n in os.listdir(d) if "orbax-checkpoint-tmp" in n] if os.path.isdir(d) else []


def _wait(proc, condition, limit=240.0):
  started = time.monotonic()
  while proc.poll() is None and not condition() and time.monotonic() - started < limit:
    time.sleep(0.005)


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory, reference):
  """6 seeded SIGKILLs of the reference command, then the same command to the end.

  Kill moments: "startup" = 0.5-4 s after launch (imports, compile, restore);
  "training" = 0-1 s after the run has restored and written flags.json;
  "in_save" = inside the k-th orbax write of that process (k = 1 or 2), i.e.
  while its temporary step directory exists (saves are slowed by 0.2 s after
  orbax creates that directory and 0.2 s before it commits). After every
  kill, every step orbax lists must restore and equal the same step of the
  uninterrupted run bit for bit.
  """
  tmp = tmp_path_factory.mktemp("crash")
  workdir = str(tmp / "run")
  rng = random.Random(20240607)
  command = [sys.executable, h.WGAN, *ARGS, f"--workdir={workdir}"]
  flags_json = os.path.join(workdir, "flags.json")
  log = []
  for i, mode in enumerate(["startup", "in_save", "training", "in_save", "training", "in_save"]):
    before = h.listed_steps(workdir)
    with open(tmp / f"stderr{i}.txt", "w") as err:
      launched, launched_wall = time.monotonic(), time.time()
      proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=h.env(**SLOW_SAVE), cwd=h.ROOT)
      if mode == "startup":
        delay = rng.uniform(0.5, 4.0)
        _wait(proc, lambda launched=launched, delay=delay: time.monotonic() - launched >= delay)
      elif mode == "training":
        delay = rng.uniform(0.0, 1.0)
        _wait(proc, lambda t=launched_wall: os.path.exists(flags_json) and os.path.getmtime(flags_json) >= t)
        time.sleep(delay)
      else:
        target = min((before[-1] if before else 0) + 5 * rng.choice([1, 2]), STEPS)
        delay = rng.uniform(0.0, 0.15)
        _wait(proc, lambda target=target: any(n.startswith(f"{target}.") for n in _tmp_dirs(workdir)))
        time.sleep(delay)
      finished = proc.poll() is not None
      proc.send_signal(signal.SIGKILL)
      proc.wait()
    in_write = bool(_tmp_dirs(workdir))
    listed = h.restore_all(workdir)  # raises if a listed step cannot be read
    for step, (state, meta) in listed.items():
      assert meta["step"] == step
      h.assert_bit_identical(state, reference["checkpoints"][step])
    log.append(
      dict(
        mode=mode,
        delay=round(delay, 3),
        finished=finished,
        in_write=in_write,
        listed=sorted(listed),
        seconds=round(time.monotonic() - launched, 1),
      )
    )
  print("\nkills:", *log, sep="\n  ")
  proc = h.run_wgan([*ARGS, f"--workdir={workdir}"], extra_env=SLOW_SAVE)
  return {"workdir": workdir, "log": log, "stdout": proc.stdout}


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_gives_the_same_bits(crashed_run, reference):
  log, workdir = crashed_run["log"], crashed_run["workdir"]
  assert sum(not e["finished"] for e in log) >= 5, log
  assert all(e["in_write"] for e in log if e["mode"] == "in_save"), log
  assert not _tmp_dirs(workdir)
  final = h.restore_all(workdir)
  assert sorted(final) == KEPT
  for step, (state, _) in final.items():
    h.assert_bit_identical(state, reference["checkpoints"][step])
  assert h.metrics(workdir) == reference["metrics"]
  assert crashed_run["stdout"].strip().splitlines()[-1].split("(")[0] == reference["summary"]


def _largest_state_file(step_dir):
  files = [os.path.join(r, n) for r, _, ns in os.walk(os.path.join(step_dir, "state")) for n in ns]
  return max(files, key=os.path.getsize)


@pytest.mark.slow
def test_truncated_latest_checkpoint_resumes_from_previous_and_is_kept_aside(crashed_run, reference):
  """The finished run's newest step (40) truncated, the same command rerun: one warning
  line, resume from step 35 (same bits at 40 as the uninterrupted run), the corrupt step
  moved to checkpoints_corrupt/40 and never deleted."""
  workdir = crashed_run["workdir"]
  step_dir = os.path.join(workdir, "checkpoints", "40")
  victim = _largest_state_file(step_dir)
  truncated = os.path.getsize(victim) // 2
  os.truncate(victim, truncated)
  proc = h.run_wgan([*ARGS, f"--workdir={workdir}"])
  warnings = [line for line in proc.stderr.splitlines() if "unreadable checkpoint" in line]
  assert len(warnings) == 1, proc.stderr
  assert "step 40" in warnings[0] and "resuming from step 35" in warnings[0] and "checkpoints_corrupt" in warnings[0]
  assert "resumed wgan_toy from step 35" in proc.stderr
  kept_aside = os.path.join(workdir, "checkpoints_corrupt", "40", os.path.relpath(victim, step_dir))
  assert os.path.getsize(kept_aside) == truncated
  assert h.listed_steps(workdir)[-1] == 40
  h.assert_bit_identical(h.restore_step(workdir, 40), reference["checkpoints"][40])
  print("\n" + warnings[0])


# ------------------------------------------------------------------ in-process: Checkpointer only


def _state(seed):
  from jaxgan.models.mlp import ToyCritic, ToyGenerator
  from jaxgan.state import create_gan_state

  return create_gan_state(
    seed=seed,
    generator=ToyGenerator(hidden=8, depth=1),
    discriminator=ToyCritic(hidden=8, depth=1),
    g_tx=optax.adam(1e-3),
    d_tx=optax.adam(1e-3),
    latent_dim=2,
    data_shape=(2,),
  )


def _corrupt(step_dir, how):
  if how == "truncate_largest_state_file":
    path = _largest_state_file(step_dir)
    os.truncate(path, os.path.getsize(path) // 2)
  elif how == "garbage_in_every_array_file":
    for r, _, names in os.walk(os.path.join(step_dir, "state")):
      for name in names:
        if os.path.basename(r) == "d":
          path = os.path.join(r, name)
          with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            f.write(b"\xde\xad\xbe\xef")
  elif how == "empty_manifest":
    os.truncate(os.path.join(step_dir, "state", "manifest.ocdbt"), 0)
  elif how == "missing_state_metadata":
    os.remove(os.path.join(step_dir, "state", "_METADATA"))
  elif how == "truncated_meta_json":
    path = os.path.join(step_dir, "meta", "metadata")
    os.truncate(path, os.path.getsize(path) // 2)
  elif how == "silent_bit_flip":
    # Stands for corruption the storage layer does not notice: the bytes read back
    # are not the ones saved, which only the saved digest reveals.
    path = os.path.join(step_dir, "meta", "metadata")
    with open(path) as f:
      meta = json.load(f)
    meta["state_digest"] = "0" * 64
    with open(path, "w") as f:
      json.dump(meta, f)
  else:
    raise ValueError(how)


# Orbax leaves an "Event loop is closed" callback behind after some failed reads; harmless.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
  "how",
  [
    "truncate_largest_state_file",
    "garbage_in_every_array_file",
    "empty_manifest",
    "missing_state_metadata",
    "truncated_meta_json",
    "silent_bit_flip",
  ],
)
def test_corrupt_newest_step_falls_back_and_pruning_keeps_the_good_one(tmp_path, how, caplog):
  from jaxgan import checkpoint

  directory, corrupt = str(tmp_path / "checkpoints"), str(tmp_path / "checkpoints_corrupt")
  states = {s: _state(s) for s in (1, 2, 3)}
  ckpt = checkpoint.Checkpointer(directory, max_to_keep=2, corrupt_dir=corrupt)
  for s in (1, 2):
    ckpt.save(s, states[s], {"model_signature": "m", "step": s}, data_state={"position": s})
  ckpt.close()
  _corrupt(os.path.join(directory, "2"), how)

  ckpt = checkpoint.Checkpointer(directory, max_to_keep=2, corrupt_dir=corrupt)
  with caplog.at_level("WARNING"):
    state, meta = ckpt.restore_latest(_state(0), "m")
  lines = [r.getMessage() for r in caplog.records if "unreadable checkpoint" in r.getMessage()]
  assert len(lines) == 1 and "step 2" in lines[0] and "resuming from step 1" in lines[0], lines
  assert meta["step"] == 1 and meta["data_state"] == {"position": 1}
  h.assert_bit_identical(h.flatten(state), h.flatten(states[1]))
  assert os.listdir(corrupt) == ["2"] and ckpt.all_steps() == [1]
  # max_to_keep=2 counts readable steps only: saving 2 and 3 prunes step 1 only after a newer
  # good step exists, and the re-saved step 2 does not collide with the corrupt one.
  ckpt.save(2, states[2], {"model_signature": "m", "step": 2})
  assert ckpt.all_steps() == [1, 2]
  ckpt.save(3, states[3], {"model_signature": "m", "step": 3})
  assert ckpt.all_steps() == [2, 3]
  assert not os.path.exists(os.path.join(directory, checkpoint.TRASH_SUBDIR))
  ckpt.close()
  ckpt = checkpoint.Checkpointer(directory, max_to_keep=2, corrupt_dir=corrupt)
  state, meta = ckpt.restore_latest(_state(0), "m")
  ckpt.close()
  assert meta["step"] == 3
  h.assert_bit_identical(h.flatten(state), h.flatten(states[3]))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_readable_step_is_one_error_and_nothing_moves(tmp_path):
  from jaxgan import checkpoint
  from jaxgan.errors import CheckpointError

  directory = str(tmp_path / "checkpoints")
  ckpt = checkpoint.Checkpointer(directory, max_to_keep=2)
  for s in (1, 2):
    ckpt.save(s, _state(s), {"model_signature": "m", "step": s})
  ckpt.close()
  for s in (1, 2):
    _corrupt(os.path.join(directory, str(s)), "empty_manifest")
  before = h.snapshot(str(tmp_path))
  ckpt = checkpoint.Checkpointer(directory, max_to_keep=2)
  with pytest.raises(CheckpointError, match=r"no readable checkpoint .* steps \[1, 2\] all failed.*nothing was"):
    ckpt.restore_latest(_state(0), "m")
  ckpt.close()
  assert h.snapshot(str(tmp_path)) == before


def test_kill_during_pruning_never_leaves_a_listed_partial_step(tmp_path):
  """Pruning renames a step into checkpoints/.trash before deleting it: a half-deleted
  step (simulated by a trash folder left behind) is never listed, and the next save
  empties the trash."""
  from jaxgan import checkpoint

  directory = str(tmp_path / "checkpoints")
  ckpt = checkpoint.Checkpointer(directory, max_to_keep=1)
  ckpt.save(1, _state(1), {"model_signature": "m", "step": 1})
  ckpt.close()
  leftover = os.path.join(directory, checkpoint.TRASH_SUBDIR, "0", "state")
  os.makedirs(leftover)
  with open(os.path.join(leftover, "half_deleted"), "wb") as f:
    f.write(b"x")
  ckpt = checkpoint.Checkpointer(directory, max_to_keep=1)
  assert ckpt.all_steps() == [1]
  ckpt.save(2, _state(2), {"model_signature": "m", "step": 2})
  assert ckpt.all_steps() == [2]
  assert not os.path.exists(os.path.join(directory, checkpoint.TRASH_SUBDIR))
  ckpt.close()


def test_metrics_line_cut_by_a_kill_is_dropped_on_resume(tmp_path):
  from jaxgan import trainer

  path = tmp_path / trainer.METRICS_FILE
  path.write_text('{"step": 5, "d_loss": 1.0}\n{"step": 10, "d_loss": 2.0}\n{"step": 15, "d_lo')
  writer = trainer._MetricsWriter(str(tmp_path), resume_step=10)
  writer.write({"step": 15, "d_loss": 3.0})
  writer.close()
  assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [5, 10, 15]
  assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))
  assert np.isclose(json.loads(path.read_text().splitlines()[-1])["d_loss"], 3.0)


def test_checkpointer_refuses_a_meta_without_signature_and_an_existing_step(tmp_path):
  """Traps: a meta without model_signature (a restore would then call every model 'different'), and
  saving a step that exists (orbax would fail inside the write with a misleading error)."""
  from jaxgan import checkpoint
  from jaxgan.errors import CheckpointError

  directory = str(tmp_path / "checkpoints")
  ckpt = checkpoint.Checkpointer(directory, max_to_keep=3)
  try:
    with pytest.raises(CheckpointError, match="needs meta\\['model_signature'\\]"):
      ckpt.save(1, _state(1), {"step": 1})
    assert ckpt.all_steps() == []
    ckpt.save(1, _state(1), {"model_signature": "m", "step": 1})
    before = h.snapshot(directory)
    with pytest.raises(CheckpointError, match="step 1 exists already") as caught:
      ckpt.save(1, _state(2), {"model_signature": "m", "step": 1})
    assert "free space" not in str(caught.value) and h.snapshot(directory) == before
  finally:
    ckpt.close()


def test_a_step_without_a_finite_flag_is_refused_by_the_trainer(tmp_path):
  """The metrics contract: no 'finite', no training (rather than a silently disabled NaN guard)."""
  import jax

  from jaxgan import trainer
  from jaxgan.data import toy
  from jaxgan.errors import ConfigError

  def no_flag(state, batch):
    del batch
    return state.replace(step=state.step + 1), {"d_loss": jax.numpy.zeros(())}

  cfg = trainer.TrainerConfig(workdir=str(tmp_path / "run"), num_steps=3)
  data = toy.MixtureIterator(toy.ring8(), 8, 0, n_critic=1)
  with pytest.raises(ConfigError, match="no 'finite' flag"):
    trainer.fit(name="no_flag", state=_state(0), train_step=jax.jit(no_flag), data=data, config=cfg)
  assert not os.path.exists(tmp_path / "run" / "checkpoints" / "1")
