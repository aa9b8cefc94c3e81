"""Bad input to experiments/wgan.py: one ``error: ...`` line, non-zero exit, workdir untouched.

Every case runs the entry point in a fresh process against a copy of a
finished run's workdir (the session's reference run: checkpoints, metrics,
figures), hashes every file before and after, and checks that stderr holds
exactly one line, ``error: ...``, naming what to change. docs/bad_inputs.md
is the table of these cases.

The disk cases mount small tmpfs filesystems (root only); without mount
permission they are skipped and the in-process ENOSPC test stands in.
"""

import concurrent.futures
import errno
import json
import os
import shutil
import subprocess
import sys
from unittest import mock

import pytest
import reliability_harness as h

ARGS = h.REFERENCE_ARGS  # the reference run's own flags: without the bad input the run would resume

# name: (extra flags, extra environment, text the error line must contain, exit status)
CASES = {
  "unknown_dataset": (["--dataset=swissroll"], {}, "--dataset=swissroll", 2),
  "unknown_loss": (["--loss=wassersteen"], {}, "--loss=wassersteen", 2),
  "unknown_model_flag": (["--generator=dcgan"], {}, "Unknown command line flag 'generator'", 2),
  "negative_batch": (["--batch_size=-64"], {}, "--batch_size=-64", 2),
  "zero_batch": (["--batch_size=0"], {}, "--batch_size=0", 2),
  "negative_steps": (["--num_steps=-1"], {}, "--num_steps=-1", 2),
  "batch_not_divisible_by_devices": (
    ["--num_devices=8", "--batch_size=60"],
    {"XLA_FLAGS": h.EIGHT_DEVICES},
    "--batch_size=60 is not divisible by the 8 devices",
    1,
  ),
  "more_devices_than_visible": (["--num_devices=4"], {}, "asked for 4 devices but 1 are visible", 1),
  "batch_not_divisible_by_pack": (["--pack=3"], {}, "not divisible by --pack=3", 1),
  "flagfile_with_unknown_flag": (["--flagfile={tmp}/bad.flags"], {}, "Unknown command line flag 'frobnicate'", 2),
  "missing_flagfile": (["--flagfile={tmp}/missing.flags"], {}, "missing.flags", 2),
  "missing_workdir_flag": (["--workdir="], {}, "workdir", None),
  "workdir_is_a_file": (["--workdir={tmp}/a_file"], {}, "is a file, not a directory", 1),
  "workdir_under_a_file": (["--workdir={tmp}/a_file/run"], {}, "is not writable (Not a directory)", 1),
  "process_id_without_coordinator": (["--process_id=1"], {}, "--coordinator_address", 1),
  "non_integer_process_env": ([], {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is not an integer", 2),
}


def _command(workdir, extra, tmp):
  args = [*ARGS, f"--workdir={workdir}"]
  for a in extra:
    a = a.replace("{tmp}", str(tmp))
    if a == "--workdir=":  # drop --workdir entirely
      args = [x for x in args if not x.startswith("--workdir=")]
    elif a.startswith("--workdir="):
      args = [x for x in args if not x.startswith("--workdir=")] + [a]
    else:
      args.append(a)
  return args


def _check(proc, expected, code):
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode != 0 and (code is None or proc.returncode == code), (proc.returncode, proc.stderr)
  assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def template(tmp_path_factory):
  return h.reference_run(tmp_path_factory)["workdir"]


@pytest.fixture(scope="module")
def outcomes(template, tmp_path_factory):
  """Runs every case (3 at a time) on its own copy of the finished reference workdir."""
  root = tmp_path_factory.mktemp("bad_input")
  (root / "bad.flags").write_text("--dataset=ring8\n--frobnicate=3\n")
  (root / "a_file").write_text("not a directory\n")
  jobs = {}
  for name, (extra, extra_env, _, _) in CASES.items():
    workdir = root / name
    shutil.copytree(template, workdir)
    jobs[name] = (workdir, _command(workdir, extra, root), extra_env)
  shared = {n: h.snapshot(str(root))[n] for n in ("bad.flags", "a_file")}
  before = {name: h.snapshot(str(workdir)) for name, (workdir, _, _) in jobs.items()}

  def run(name):
    _, args, extra_env = jobs[name]
    return h.run_wgan(args, extra_env=extra_env, check=False, timeout=300)

  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    procs = dict(zip(jobs, pool.map(run, jobs)))
  after = {name: h.snapshot(str(workdir)) for name, (workdir, _, _) in jobs.items()}
  shared_after = {n: h.snapshot(str(root))[n] for n in shared}
  return {name: (procs[name], (before[name], shared), (after[name], shared_after)) for name in jobs}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_nothing_changes(name, outcomes):
  proc, before, after = outcomes[name]
  _, _, expected, code = CASES[name]
  _check(proc, expected, code)
  assert len(before[0]) > 20
  assert after == before  # every file of the workdir copy, and the flag files, hashed before and after
  print(f"\n{name}: exit {proc.returncode}: {proc.stderr.strip()}")


# ------------------------------------------------------------------ filesystems (root: tmpfs mounts)


@pytest.fixture
def tmpfs(tmp_path):
  """mount(size, ro=False) -> a fresh tmpfs mount point; unmounted afterwards."""
  mounted = []

  def mount(size, ro=False):
    point = tmp_path / f"mnt{len(mounted)}"
    point.mkdir()
    opts = f"size={size}" + (",ro" if ro else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True)
    if proc.returncode != 0:
      pytest.skip(f"cannot mount tmpfs here ({proc.stderr.decode().strip()})")
    mounted.append(point)
    return point

  yield mount
  for point in reversed(mounted):
    subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(directory, leave_bytes):
  """Fills the filesystem of ``directory`` until about ``leave_bytes`` remain free."""
  fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT)
  try:
    while True:
      st = os.statvfs(directory)
      free = st.f_bavail * st.f_frsize
      if free <= leave_bytes:
        break
      os.write(fd, b"\0" * min(free - leave_bytes, 1 << 20))
  except OSError as e:
    assert e.errno == errno.ENOSPC and leave_bytes == 0
  finally:
    os.close(fd)


def test_read_only_workdir(template, tmpfs):
  mnt = tmpfs("16m")
  workdir = mnt / "run"
  shutil.copytree(template, workdir)
  subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
  before = h.snapshot(str(mnt))
  proc = h.run_wgan(_command(workdir, [], mnt), check=False)
  _check(proc, "is not writable (Read-only file system): choose another --workdir", 1)
  assert h.snapshot(str(mnt)) == before


def test_disk_already_full(template, tmpfs):
  mnt = tmpfs("16m")
  workdir = mnt / "run"
  shutil.copytree(template, workdir)
  _fill(str(mnt), 0)
  before = h.snapshot(str(mnt))
  proc = h.run_wgan(_command(workdir, ["--num_steps=45"], mnt), check=False)
  _check(proc, "no space left on device", 1)
  assert h.snapshot(str(mnt)) == before


@pytest.mark.slow
def test_disk_fills_during_a_checkpoint_save(template, tmpfs):
  """64 KiB left: the run resumes at 40, trains to 45 and fails inside orbax's write of step 45.
  One error line; every checkpoint file is as it was, no partial step is left, and the
  same command resumes once there is space again."""
  mnt = tmpfs("16m")
  workdir = mnt / "run"
  shutil.copytree(template, workdir)
  _fill(str(mnt), 64 * 1024)
  checkpoints = h.snapshot(str(workdir / "checkpoints"))
  with open(workdir / "metrics.jsonl") as f:
    old_metrics = f.read()
  proc = h.run_wgan(_command(workdir, ["--num_steps=45"], mnt), check=False)
  errors = h.error_lines(proc.stderr)
  assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert "no space left on device" in errors[0] and "step 45" in errors[0], errors
  assert [line for line in proc.stderr.splitlines() if line.strip()][-1] == errors[0]
  assert h.snapshot(str(workdir / "checkpoints")) == checkpoints
  assert h.listed_steps(str(workdir))[-1] == 40
  with open(workdir / "metrics.jsonl") as f:
    assert f.read().startswith(old_metrics)
  os.remove(mnt / "filler")
  h.run_wgan(_command(workdir, ["--num_steps=45"], mnt))
  assert h.listed_steps(str(workdir))[-1] == 45
  print(f"\ndisk full during save: {errors[0]}")


def test_enospc_inside_orbax_save_is_a_checkpoint_error_in_process(tmp_path):
  """The same failure without a mount: orbax's save raises ENOSPC."""
  import optax
  import orbax.checkpoint as ocp

  from jaxgan import checkpoint
  from jaxgan.errors import CheckpointError
  from jaxgan.models.mlp import ToyCritic, ToyGenerator
  from jaxgan.state import create_gan_state

  state = create_gan_state(
    seed=0,
    generator=ToyGenerator(hidden=4, depth=1),
    discriminator=ToyCritic(hidden=4, depth=1),
    g_tx=optax.sgd(1e-3),
    d_tx=optax.sgd(1e-3),
    latent_dim=2,
    data_shape=(2,),
  )
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(1, state, {"model_signature": "m", "step": 1})
  full = OSError(errno.ENOSPC, "No space left on device")
  with mock.patch.object(ocp.CheckpointManager, "save", side_effect=full):
    with pytest.raises(CheckpointError, match="could not write checkpoint step 2 .*no space left on device"):
      ckpt.save(2, state, {"model_signature": "m", "step": 2})
  assert ckpt.all_steps() == [1]
  ckpt.close()


def test_disk_fills_after_the_last_checkpoint(template, tmpfs):
  """The run is complete (step 40 saved) and the disk fills: the figures and reports written after
  training fail with one line, no temporary file is left, and the checkpoints are as they were."""
  mnt = tmpfs("16m")
  workdir = mnt / "run"
  shutil.copytree(template, workdir)
  _fill(str(mnt), 16 * 1024)
  checkpoints = h.snapshot(str(workdir / "checkpoints"))
  proc = h.run_wgan(_command(workdir, [], mnt), check=False)
  errors = h.error_lines(proc.stderr)
  assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "no space left on device" in errors[0] and "could not write" in errors[0]
  leftovers = [os.path.join(r, n) for r, _, ns in os.walk(workdir) for n in ns if ".tmp" in n]
  assert not leftovers, leftovers
  assert h.snapshot(str(workdir / "checkpoints")) == checkpoints
  print(f"\ndisk full after the last checkpoint: {errors[0]}")


PAYLOAD = """
import os, pickle, sys


class Payload:
  def __reduce__(self):
    return (os.system, ("touch " + sys.argv[2],))


with open(sys.argv[1], "wb") as f:
  pickle.dump(Payload(), f)
"""


def test_a_pickle_payload_as_inception_weights_never_runs(tmp_path, template):
  """--inception_weights (and $JAXGAN_INCEPTION_WEIGHTS) read .npz only: a pickle is refused unread."""
  from jaxgan.metrics import inception

  marker = tmp_path / "payload_ran"
  for name in ("weights.pth", "weights.pkl", "weights.npz"):
    path = tmp_path / name
    subprocess.run([sys.executable, "-c", PAYLOAD, str(path), str(marker)], check=True)
    with pytest.raises(ValueError, match="not an .npz file|not a readable .npz"):
      inception.load_inception_weights(str(path))
    assert not marker.exists()
  workdir = tmp_path / "run"
  shutil.copytree(template, workdir)
  before = h.snapshot(str(workdir))
  evaluate = os.path.join(h.ROOT, "experiments", "evaluate.py")
  for extra_args, extra_env in (
    ([f"--inception_weights={tmp_path / 'weights.pth'}"], {}),
    ([], {"JAXGAN_INCEPTION_WEIGHTS": str(tmp_path / "weights.pkl")}),
  ):
    proc = subprocess.run(
      [sys.executable, evaluate, f"--workdir={workdir}", "--metrics=fid", *extra_args],
      capture_output=True,
      text=True,
      env=h.env(**extra_env),
      cwd=h.ROOT,
      timeout=300,
    )
    errors = h.error_lines(proc.stderr)
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-2000:]
    assert not marker.exists()
  assert h.snapshot(str(workdir)) == before


def test_flags_json_without_a_key_is_one_line(tmp_path, template):
  workdir = tmp_path / "run"
  shutil.copytree(template, workdir)
  flags_path = workdir / "flags.json"
  cfg = json.loads(flags_path.read_text())
  del cfg["d_widths"]
  flags_path.write_text(json.dumps(cfg))
  before = h.snapshot(str(workdir))
  proc = subprocess.run(
    [sys.executable, os.path.join(h.ROOT, "experiments", "evaluate.py"), f"--workdir={workdir}"],
    capture_output=True,
    text=True,
    env=h.env(),
    cwd=h.ROOT,
    timeout=300,
  )
  errors = h.error_lines(proc.stderr)
  assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-2000:]
  assert "have no 'd_widths'" in errors[0] and "rerun the training command" in errors[0]
  assert h.snapshot(str(workdir)) == before
