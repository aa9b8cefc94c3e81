"""TensorBoard events, logged learning rates and the progress rate of `trainer.fit`.

The subject is a tiny WGAN-GP on the 8-Gaussian ring (2 critic updates per
iteration, a decaying critic rate) with an ``eval_fn`` and a sample hook that
writes a PNG. The event files are read back with tensorboardX's own protobufs:
TFRecord framing (8-byte little-endian length, 4-byte length CRC, the data,
4-byte data CRC), each record an ``Event``.
"""

import errno
import functools
import io
import json
import os
import struct
import time
from unittest import mock

import numpy as np
import optax
import pytest
from PIL import Image
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c

from jaxgan import optimizers, parallel, regularizers, trainer
from jaxgan.data import toy
from jaxgan.errors import ConfigError, StorageError
from jaxgan.families import gan
from jaxgan.models.mlp import ToyCritic, ToyGenerator
from jaxgan.state import create_gan_state

N_CRITIC = 2
G_LR = 1e-3
D_SCHEDULE = optax.linear_schedule(1e-3, 0.0, 40)  # over the critic's updates: 2 per iteration


def _setup(with_lr_schedule=True):
  config = gan.Config(loss="wasserstein", n_critic=N_CRITIC, latent_dim=2, penalties=(regularizers.wgan_gp(0.1),))
  state = create_gan_state(
    seed=0,
    generator=ToyGenerator(hidden=8, depth=1),
    discriminator=ToyCritic(hidden=8, depth=1),
    g_tx=optax.adam(G_LR),
    d_tx=optax.adam(D_SCHEDULE if with_lr_schedule else 1e-3),
    latent_dim=2,
    data_shape=(2,),
  )
  mesh = parallel.make_data_mesh(1)
  train_step = parallel.compile_step(functools.partial(gan.train_step, config=config), mesh=mesh)
  data = toy.MixtureIterator(toy.ring8(), 32, seed=0, n_critic=N_CRITIC)
  return state, train_step, data, mesh


def _eval_fn(state, step):
  del step
  return {"g_param_norm": float(optax.tree.norm(state.gen.params))}


def _png_hook(workdir):
  def hook(state, step):
    del state
    path = os.path.join(workdir, "samples", f"grid_{step:07d}.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((6, 10, 3), step, np.uint8)).save(path)
    return path

  return hook


def _fit(workdir, num_steps=8, tensorboard=True, **kwargs):
  state, train_step, data, mesh = _setup()
  config = trainer.TrainerConfig(
    workdir=str(workdir),
    num_steps=num_steps,
    log_every=kwargs.pop("log_every", 1),
    checkpoint_every=4,
    sample_every=4,
    eval_every=4,
    tensorboard=tensorboard,
  )
  learning_rates = {
    "g_lr": optimizers.rate_at_iteration(G_LR),
    "d_lr": optimizers.rate_at_iteration(D_SCHEDULE, N_CRITIC),
  }
  return trainer.fit(
    name="tb_test",
    state=state,
    train_step=kwargs.pop("train_step", train_step),
    data=data,
    config=config,
    mesh=mesh,
    eval_fn=kwargs.pop("eval_fn", _eval_fn),
    sample_hook=kwargs.pop("sample_hook", _png_hook(str(workdir))),
    learning_rates=kwargs.pop("learning_rates", learning_rates),
    **kwargs,
  )


def read_events(path):
  """Every `Event` of one TensorBoard event file: TFRecords, both masked CRC-32Cs checked."""
  events = []
  with open(path, "rb") as f:
    while header := f.read(12):
      (length,) = struct.unpack("<Q", header[:8])
      assert struct.unpack("<I", header[8:])[0] == masked_crc32c(header[:8])
      data = f.read(length)
      assert struct.unpack("<I", f.read(4))[0] == masked_crc32c(data)
      events.append(event_pb2.Event.FromString(data))
  return events


def event_files(workdir):
  directory = os.path.join(workdir, trainer.TENSORBOARD_DIR)
  if not os.path.isdir(directory):
    return []
  return sorted(os.path.join(directory, n) for n in os.listdir(directory) if "tfevents" in n)


def summaries(events):
  """{tag: [(step, value)]}: a scalar's float, an image's `Summary.Image`."""
  out = {}
  for e in events:
    for v in e.summary.value:
      out.setdefault(v.tag, []).append((e.step, v.image if v.HasField("image") else v.simple_value))
  return out


def _records(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("tb") / "run"
  _fit(workdir)
  return str(workdir)


def test_scalars_learning_rates_eval_and_images_reach_tensorboard(trained):
  files = event_files(trained)
  assert len(files) == 1
  tags = summaries(read_events(files[0]))
  for name in ("d_loss", "g_loss", "g_lr", "d_lr", "steps_per_sec", "elapsed_sec"):
    assert f"train/{name}" in tags, sorted(tags)
  assert [s for s, _ in tags["train/d_loss"]] == list(range(1, 9))
  assert [s for s, _ in tags["eval/g_param_norm"]] == [4, 8]
  assert "eval/eval_sec" in tags
  # The same numbers as metrics.jsonl / eval.jsonl.
  metrics = _records(os.path.join(trained, trainer.METRICS_FILE))
  np.testing.assert_allclose([v for _, v in tags["train/d_loss"]], [r["d_loss"] for r in metrics], rtol=1e-6)
  evals = _records(os.path.join(trained, trainer.EVAL_FILE))
  np.testing.assert_allclose([v for _, v in tags["eval/g_param_norm"]], [r["g_param_norm"] for r in evals], rtol=1e-6)
  # The sample hook's PNG, under its file stem without the step, at the hook's steps, with its pixels.
  images = tags["samples/grid"]
  assert [s for s, _ in images] == [4, 8]
  for step, image in images:
    assert (image.height, image.width, image.colorspace) == (6, 10, 3)
    decoded = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
    assert decoded.shape == (6, 10, 3) and np.all(decoded == step)


def test_learning_rates_are_logged_at_each_step(trained):
  metrics = _records(os.path.join(trained, trainer.METRICS_FILE))
  # The critic's schedule is over its own updates: N_CRITIC per iteration.
  np.testing.assert_allclose([r["d_lr"] for r in metrics], [1e-3 * (1 - N_CRITIC * s / 40) for s in range(1, 9)])
  assert all(r["g_lr"] == G_LR for r in metrics)
  tags = summaries(read_events(event_files(trained)[0]))
  np.testing.assert_allclose([v for _, v in tags["train/d_lr"]], [r["d_lr"] for r in metrics], rtol=1e-6)


def test_first_log_line_has_no_rate_the_others_do(trained):
  metrics = _records(os.path.join(trained, trainer.METRICS_FILE))
  assert "steps_per_sec" not in metrics[0] and "elapsed_sec" in metrics[0]
  assert all(r["steps_per_sec"] > 0 for r in metrics[1:])


def test_tensorboard_off_writes_no_event_files(tmp_path):
  _fit(tmp_path / "run", num_steps=4, tensorboard=False)
  assert event_files(str(tmp_path / "run")) == []
  assert len(_records(os.path.join(tmp_path, "run", trainer.METRICS_FILE))) == 4


def test_resume_keeps_the_earlier_events_and_purges_the_replayed_steps(tmp_path):
  workdir = tmp_path / "run"
  _fit(workdir, num_steps=4)
  first = event_files(str(workdir))
  _fit(workdir, num_steps=8)
  files = event_files(str(workdir))
  assert len(files) == 2 and files[0] == first[0]  # the new run has its own file; the earlier one is kept
  earlier, resumed = (read_events(f) for f in files)
  assert [s for s, _ in summaries(earlier)["train/d_loss"]] == [1, 2, 3, 4]
  # After its file header, the resumed file has the purge marker at the restored step + 1 (the restored step's
  # values stay). Each run has its own file, even two within the same second (named by time and pid).
  assert resumed[1].step == 5 and resumed[1].file_version
  assert resumed[2].step == 5 and resumed[2].session_log.status == event_pb2.SessionLog.START
  assert [s for s, _ in summaries(resumed)["train/d_loss"]] == [5, 6, 7, 8]


def test_rate_leaves_out_the_first_iteration_evaluation_saves_and_hooks(tmp_path):
  """The first call sleeps 2 s, every evaluation and hook 1 s; counted, the rate at step 8 would be below 2 it/s."""
  state, train_step, data, mesh = _setup()
  calls = []

  def slow_first_step(st, batch):
    out = train_step(st, batch)
    if not calls:
      time.sleep(2.0)
    calls.append(1)
    return out

  def slow_eval(st, step):
    time.sleep(1.0)
    return _eval_fn(st, step)

  hook = _png_hook(str(tmp_path))

  def slow_hook(st, step):
    time.sleep(1.0)
    return hook(st, step)

  _fit(tmp_path / "run", train_step=slow_first_step, eval_fn=slow_eval, sample_hook=slow_hook, log_every=4)
  metrics = _records(os.path.join(tmp_path, "run", trainer.METRICS_FILE))
  assert [r["step"] for r in metrics] == [4, 8]
  assert metrics[-1]["elapsed_sec"] > 4.0  # the sleeps before step 8's log line happened: 2 + 1 + 1
  assert metrics[-1]["steps_per_sec"] > 5.0, metrics


def test_a_failing_event_write_is_one_storage_error(tmp_path):
  full = OSError(errno.ENOSPC, "No space left on device")
  with mock.patch.object(trainer._TensorBoard, "_add", side_effect=full):
    with pytest.raises(StorageError, match="at iteration 1 .*no space left on device.*rerun the same command"):
      _fit(tmp_path / "run", num_steps=4)


class FakeClock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_progress_rate_and_eta_formula():
  clock = FakeClock()
  config = trainer.TrainerConfig(workdir="unused", num_steps=100, eval_every=10, checkpoint_every=50, sample_every=0)
  progress = trainer._Progress(config, clock=clock)
  clock.now += 30.0  # compiling the first iteration
  progress.first_iteration_done(1)
  assert progress.rate(1) is None and progress.eta(1, None) is None
  clock.now += 9.0  # iterations 2..10
  assert progress.rate(10) == pytest.approx(1.0)
  # Before any evaluation or save: iterations left / rate only.
  assert progress.eta(10, 1.0) == pytest.approx(90.0)
  with progress.paused("eval"):
    clock.now += 4.0
  clock.now += 10.0  # iterations 11..20
  assert progress.rate(20) == pytest.approx(1.0)  # the 4 s of evaluation are not training
  # 80 iterations + 9 evaluations to come (20, 30, ..., 100) at 4 s each.
  assert progress.eta(20, 1.0) == pytest.approx(80.0 + 9 * 4.0)
  with progress.paused("hook"):
    clock.now += 2.0
  # Hooks: only the final one is left (sample_every=0).
  assert progress.eta(20, 1.0) == pytest.approx(80.0 + 9 * 4.0 + 2.0)
  with progress.paused("log"):
    clock.now += 1.0
  # Log lines: the one of step 20 is being written, the final one (log_every=100) is to come.
  assert progress.eta(20, 1.0) == pytest.approx(80.0 + 9 * 4.0 + 2.0 + 1.0)
  assert progress.rate(20) == pytest.approx(1.0)
  assert progress.elapsed() == pytest.approx(56.0)


def test_events_left_counts_the_final_one():
  assert trainer.events_left(10, 20, 100) == 9  # 20, 30, ..., 100
  assert trainer.events_left(10, 21, 100) == 8
  assert trainer.events_left(30, 1, 100) == 4  # 30, 60, 90 and the end
  assert trainer.events_left(0, 5, 100) == 1  # only at the end
  assert trainer.events_left(10, 100, 100) == 1
  assert trainer.events_left(10, 101, 100) == 0


def test_sample_image_tag_strips_the_step():
  assert trainer.sample_image_tag("/w/samples/class_grid_0000100.png") == "samples/class_grid"
  assert trainer.sample_image_tag("/w/samples/step_0000100.png") == "samples/samples"
  assert trainer.sample_image_tag("/w/figures/0000100.png") == "samples/figures"
  assert trainer.sample_image_tag("/w/samples/grid.png") == "samples/grid"
  assert trainer.sample_image_tag("/w/samples/grid_step_12.png") == "samples/grid"


def test_a_hook_returning_something_else_is_one_error(tmp_path):
  with pytest.raises(ConfigError, match="sample_hook returned int 3"):
    _fit(tmp_path / "a", num_steps=4, sample_hook=lambda st, step: 3)
  with pytest.raises(ConfigError, match="not a readable image"):
    _fit(tmp_path / "b", num_steps=4, sample_hook=lambda st, step: str(tmp_path / "missing.png"))


def test_rate_at_iteration():
  schedule = optax.linear_schedule(1.0, 0.0, 100)
  critic = optimizers.rate_at_iteration(schedule, 5)
  assert [critic(s) for s in (0, 1, 10, 20, 30)] == pytest.approx([1.0, 0.95, 0.5, 0.0, 0.0])
  assert isinstance(critic(3), float)
  assert optimizers.rate_at_iteration(2e-4)(1000) == 2e-4
  from_library = optimizers.learning_rate(1.0, "linear_decay", num_updates=10, decay_start=0.5)
  assert optimizers.rate_at_iteration(from_library, 1)(8) == pytest.approx(float(from_library(8)))
  for bad in (0, -1, 2.5):
    with pytest.raises(ConfigError, match="updates_per_iteration"):
      optimizers.rate_at_iteration(schedule, bad)


def test_bad_learning_rates_are_one_error(tmp_path):
  with pytest.raises(ConfigError, match="learning_rates must map names"):
    _fit(tmp_path / "a", num_steps=2, learning_rates={"step": lambda s: 1.0})
  with pytest.raises(ConfigError, match="learning_rates must map names"):
    _fit(tmp_path / "b", num_steps=2, learning_rates={"d_lr": 1e-3})
  with pytest.raises(ConfigError, match="'d_loss' is also a metric"):
    _fit(tmp_path / "c", num_steps=2, learning_rates={"d_loss": lambda s: 1.0})
