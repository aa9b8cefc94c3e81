"""experiments/evaluate.py and the trainer's periodic evaluation with best-checkpoint keeping.

Tiny runs of dcgan.py, cgan.py and wgan.py start together in fresh processes
(as soon as the first test asks for them) while the in-process trainer tests
run; the evaluate.py checks on those runs come after.
"""

import functools
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import optax
import pytest
import reliability_harness as h

from jaxgan import checkpoint as checkpoint_lib
from jaxgan import evaluation, parallel, recipes, regularizers, trainer
from jaxgan.data import toy
from jaxgan.errors import CheckpointError, ConfigError, JaxganError
from jaxgan.families import gan
from jaxgan.metrics import classifier as clf
from jaxgan.models.mlp import ToyCritic, ToyGenerator
from jaxgan.state import create_gan_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVALUATE = os.path.join(ROOT, "experiments", "evaluate.py")
COLUMNS = "| metric | value | real-vs-real floor | n_real | n_fake | step |"
FEATURE_ROWS = ["fcd", "kid", "precision", "recall", "density", "coverage", "confident_fraction"]


def _env():
  return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)


def _start(script, args):
  return subprocess.Popen(
    [sys.executable, os.path.join(ROOT, "experiments", script), *args],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=_env(),
    cwd=ROOT,
  )


def _finish(proc, check=True):
  stdout, stderr = proc.communicate(timeout=300)
  if check and proc.returncode != 0:
    raise AssertionError(f"exit {proc.returncode}\n{stderr[-3000:]}")
  return proc.returncode, stdout, stderr


# ---------------------------------------------------------------------------- fixtures: tiny runs


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
  """A digits classifier (3 epochs, in-process), then tiny dcgan / cgan / wgan runs in fresh processes."""
  base = tmp_path_factory.mktemp("evaluation")
  x, y = clf.dataset_arrays("digits", "train")
  module = clf.DigitsCNN(num_classes=10)
  params, _ = clf.train_classifier(module, x, y, clf.TrainConfig(epochs=3, max_shift=1, seed=0))
  tx, ty = clf.dataset_arrays("digits", "test")
  accuracy = clf.label_accuracy(clf.make_apply_fns(module, params)[0], tx, ty, 10)["accuracy"]
  classifier = str(base / "clf")
  clf.save_classifier(
    classifier,
    params,
    {
      "arch": "digits_cnn",
      "arch_config": {"width": 32, "features": 128, "dropout": 0.25},
      "dataset": "digits",
      "image_shape": [8, 8, 1],
      "num_classes": 10,
      "test_accuracy": accuracy,
    },
  )
  dirs = {name: str(base / name) for name in ("dcgan", "cgan", "wgan", "pix2pix", "cyclegan")}
  tiny_translation = ["--dataset=digits_edges", "--image_size=16", "--g_widths=4", "--patch_size=16"]
  tiny_translation += ["--d_widths=4", "--num_steps=2", "--log_every=1", "--checkpoint_every=2"]
  tiny_translation += ["--sample_every=0", "--eval_samples=12", "--grid_size=2", "--jitter=false"]
  started = {
    "dcgan": _start(
      "dcgan.py",
      [
        "--dataset=digits",
        "--num_steps=6",
        "--batch_size=16",
        "--g_widths=4",
        "--d_widths=4",
        "--latent_dim=8",
        "--ema_decay=0.9",
        "--log_every=2",
        "--checkpoint_every=3",
        "--keep_checkpoints=5",
        "--sample_every=0",
        "--eval_samples=100",
        "--grid_size=3",
        "--eval_every=2",
        "--best_metric=fcd",
        f"--classifier_workdir={classifier}",
        f"--workdir={dirs['dcgan']}",
      ],
    ),
    "cgan": _start(
      "cgan.py",
      [
        "--num_steps=4",
        "--batch_size=16",
        "--g_widths=16",
        "--d_widths=16",
        "--latent_dim=8",
        "--eval_samples=50",
        "--log_every=2",
        "--checkpoint_every=2",
        "--sample_every=0",
        "--grid_size=2",
        "--eval_every=2",
        "--best_metric=label_accuracy",
        f"--classifier_workdir={classifier}",
        f"--workdir={dirs['cgan']}",
      ],
    ),
    "wgan": _start("wgan.py", [*h.WGAN_TINY, "--num_steps=20", f"--workdir={dirs['wgan']}"]),
    "pix2pix": _start(
      "pix2pix.py", [*tiny_translation, "--max_features=8", "--batch_size=4", f"--workdir={dirs['pix2pix']}"]
    ),
    "cyclegan": _start(
      "cyclegan.py",
      [*tiny_translation, "--num_blocks=1", "--pool_size=2", "--batch_size=2", f"--workdir={dirs['cyclegan']}"],
    ),
  }
  done = {}

  def get(name):
    if name == "classifier":
      return classifier
    if name not in done:
      _finish(started[name])
      done[name] = dirs[name]
    return done[name]

  yield get
  for proc in started.values():
    if proc.poll() is None:
      proc.kill()


@pytest.fixture(autouse=True)
def _start_programs_early(programs):
  """Every test asks for the programs, so the first one starts them."""


# ---------------------------------------------------------------------------- trainer: best checkpoint


@functools.cache
def _toy_train_step():
  config = gan.Config(loss="wasserstein", n_critic=1, latent_dim=2, penalties=(regularizers.wgan_gp(0.1),))
  mesh = parallel.make_data_mesh(1)
  return parallel.compile_step(functools.partial(gan.train_step, config=config), mesh=mesh), mesh


def _toy_fit(workdir, num_steps, eval_fn=None, best_metric=None, best_mode="min", eval_every=2, checkpoint_every=4):
  state = create_gan_state(
    seed=0,
    generator=ToyGenerator(hidden=8, depth=1),
    discriminator=ToyCritic(hidden=8, depth=1),
    g_tx=optax.adam(1e-3),
    d_tx=optax.adam(1e-3),
    latent_dim=2,
    data_shape=(2,),
  )
  train_step, mesh = _toy_train_step()
  data = toy.MixtureIterator(toy.ring8(), 16, seed=0, n_critic=1)
  tconfig = trainer.TrainerConfig(
    workdir=str(workdir),
    num_steps=num_steps,
    log_every=2,
    checkpoint_every=checkpoint_every,
    keep_checkpoints=10,
    eval_every=eval_every,
  )
  return trainer.fit(
    name="eval_test",
    state=state,
    train_step=train_step,
    data=data,
    config=tconfig,
    mesh=mesh,
    eval_fn=eval_fn,
    best_metric=best_metric,
    best_mode=best_mode,
  )


def _best_state(workdir):
  manager = checkpoint_lib.Checkpointer(os.path.join(workdir, trainer.BEST_DIR), max_to_keep=1)
  try:
    (step,) = manager.all_steps()
  finally:
    manager.close()
  return step, h.flatten(
    checkpoint_lib.ocp.StandardCheckpointer().restore(os.path.join(workdir, trainer.BEST_DIR, str(step), "state"))
  )


def _eval_records(workdir):
  with open(os.path.join(workdir, trainer.EVAL_FILE)) as f:
    return [{k: v for k, v in json.loads(line).items() if k != "eval_sec"} for line in f]


def test_best_checkpoint_is_the_best_step_and_survives_a_resume(tmp_path):
  script = {2: 5.0, 4: 3.0, 6: math.nan, 8: 3.5, 10: 3.2, 12: 2.0}
  best_seen = {}

  def eval_fn(state, step):
    best = trainer.read_best(str(tmp_path))
    best_seen[step] = None if best is None else best["step"]
    return {"score": script[step], "other": float(step)}

  _toy_fit(tmp_path, 6, eval_fn, "score")
  step, state = _best_state(tmp_path)
  assert step == 4  # 3.0 < 5.0, and NaN never wins
  h.assert_bit_identical(state, h.restore_step(str(tmp_path), 4))  # the state of that step, exactly
  assert trainer.read_best(str(tmp_path))["best_value"] == 3.0
  # Resumed from step 6: 3.5 and 3.2 are worse than the 3.0 read back from the best checkpoint's meta.
  _toy_fit(tmp_path, 12, eval_fn, "score")
  assert best_seen == {2: None, 4: 2, 6: 4, 8: 4, 10: 4, 12: 4}
  step, state = _best_state(tmp_path)
  assert step == 12 and trainer.read_best(str(tmp_path))["best_value"] == 2.0
  h.assert_bit_identical(state, h.restore_step(str(tmp_path), 12))
  assert h.listed_steps(str(tmp_path)) == [4, 6, 8, 12]  # the rolling checkpoints are untouched
  records = _eval_records(tmp_path)
  assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12] and math.isnan(records[2]["score"])
  assert [r["other"] for r in records] == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]


def test_best_mode_max_and_bad_settings(tmp_path):
  script = {2: 0.1, 4: 0.7, 6: 0.4}
  _toy_fit(tmp_path, 6, lambda st, step: {"acc": script[step]}, "acc", "max")
  assert _best_state(tmp_path)[0] == 4
  with pytest.raises(ConfigError, match="keeps the best by acc \\(max\\), this run asks for acc \\(min\\)"):
    _toy_fit(tmp_path, 8, lambda st, step: {"acc": 1.0}, "acc", "min")
  with pytest.raises(ConfigError, match="'nope' is not among the evaluation's numbers \\(acc\\)"):
    _toy_fit(tmp_path / "other", 2, lambda st, step: {"acc": 1.0}, "nope", "max")
  with pytest.raises(ConfigError, match="needs an eval_fn"):
    _toy_fit(tmp_path / "other", 2, None, "acc")
  with pytest.raises(CheckpointError, match="no best checkpoint"):
    trainer.restore_checkpoint(str(tmp_path / "other"), None, "sig", "best")


def test_resume_with_evaluation_is_bit_exact(tmp_path):
  z = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)

  def eval_fn(state, step):  # its own fixed z: never the training keys
    points = np.asarray(gan.sample(state, z))
    return {"spread": float(points.std()), "mean_x": float(points[:, 0].mean())}

  straight, resumed, plain = tmp_path / "straight", tmp_path / "resumed", tmp_path / "plain"
  final = _toy_fit(straight, 8, eval_fn, "spread")
  _toy_fit(resumed, 4, eval_fn, "spread")
  final_resumed = _toy_fit(resumed, 8, eval_fn, "spread")
  final_plain = _toy_fit(plain, 8, eval_every=0)
  h.assert_bit_identical(h.flatten(final), h.flatten(final_resumed))
  h.assert_bit_identical(h.flatten(final), h.flatten(final_plain))  # evaluating changes nothing
  assert [r["step"] for r in _eval_records(straight)] == [2, 4, 6, 8]
  assert _eval_records(straight) == _eval_records(resumed)
  step_a, best_a = _best_state(straight)
  step_b, best_b = _best_state(resumed)
  assert step_a == step_b
  h.assert_bit_identical(best_a, best_b)
  assert not os.path.exists(plain / trainer.EVAL_FILE) and not os.path.exists(plain / trainer.BEST_DIR)


# ---------------------------------------------------------------------------- evaluate.py on real runs


def _evaluate(args, check=True):
  return _finish(
    subprocess.Popen(
      [sys.executable, EVALUATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT
    ),
    check,
  )


def test_evaluate_dcgan_run_writes_the_table_with_a_floor_per_metric(programs):
  workdir, classifier = programs("dcgan"), programs("classifier")
  _, stdout, _ = _evaluate([f"--workdir={workdir}", f"--classifier_workdir={classifier}"])
  with open(os.path.join(workdir, "eval", "results_step6.json")) as f:
    result = json.load(f)
  with open(os.path.join(workdir, "eval", "results_step6.md")) as f:
    markdown = f.read()
  assert result["experiment"] == "dcgan" and result["dataset"] == "digits" and result["step"] == 6
  assert result["parameters"] == "ema" and result["classifier"]["dataset"] == "digits"
  assert result["held_out"] == "test split"
  records = {r["metric"]: r for r in result["records"]}
  assert list(records) == FEATURE_ROWS
  for r in records.values():
    assert isinstance(r["value"], float) and isinstance(r["floor"], float)
    assert (r["n_real"], r["n_fake"], r["step"]) == (1500, 297, 6)  # n_fake: the 297 held-out test digits
  assert "std" in records["kid"] and "floor_std" in records["kid"]
  # Real held-out digits are far closer to the training digits than a barely trained generator's samples.
  assert records["fcd"]["floor"] < 0.2 * records["fcd"]["value"]
  assert records["kid"]["floor"] < records["kid"]["value"] and records["precision"]["floor"] > 0.5
  assert records["confident_fraction"]["floor"] > records["confident_fraction"]["value"]
  assert COLUMNS in markdown and COLUMNS in stdout
  assert "| kid | " in stdout and " ± " in stdout.split("| kid | ")[1].split("\n")[0]
  assert "results_step6.json" in stdout


def test_best_step_of_a_run_with_eval_every(programs):
  workdir, classifier = programs("dcgan"), programs("classifier")
  records = _eval_records(workdir)
  assert [r["step"] for r in records] == [2, 4, 6] and all(k in records[0] for k in FEATURE_ROWS + ["kid_std"])
  best = min(records, key=lambda r: r["fcd"])
  step, _ = _best_state(workdir)
  assert step == best["step"]
  assert h.listed_steps(workdir) == [3, 6]  # rolling checkpoints as without evaluation
  result = evaluation.evaluate_run(workdir, classifier_workdir=classifier, step="best", metrics=["fcd"])
  header = result["header"]
  assert header["checkpoint"] == "best" and header["step"] == step
  assert header["best"]["best_metric"] == "fcd" and header["best"]["best_value"] == pytest.approx(best["fcd"])
  assert [r["metric"] for r in result["records"]] == ["fcd"] and result["records"][0]["step"] == step
  assert f"checkpoint best (step {step})" in evaluation.results_markdown(result["records"], header)


def test_cgan_run_gets_label_accuracy(programs):
  workdir, classifier = programs("cgan"), programs("classifier")
  assert [r["step"] for r in _eval_records(workdir)] == [2, 4]
  assert trainer.read_best(workdir)["best_metric"] == "label_accuracy"
  result = evaluation.evaluate_run(workdir, classifier_workdir=classifier, metrics="label_accuracy,fcd", num_fake=100)
  records = {r["metric"]: r for r in result["records"]}
  assert list(records) == ["fcd", "label_accuracy"] and result["header"]["kind"] == "conditional"
  acc = records["label_accuracy"]
  assert acc["n_fake"] == 100 and 0.0 <= acc["value"] <= 1.0
  assert acc["floor"] > 0.6  # the classifier on real held-out digits
  assert records["fcd"]["floor"] < records["fcd"]["value"]


def test_toy_run_gets_mode_metrics(programs):
  workdir = programs("wgan")
  result = evaluation.evaluate_run(workdir, num_fake=1000)
  records = {r["metric"]: r for r in result["records"]}
  assert list(records) == ["modes_captured", "high_quality_percent", "reverse_kl"]
  assert records["modes_captured"]["floor"] == 8 and records["high_quality_percent"]["floor"] > 95
  assert all(r["n_fake"] == 1000 and r["step"] == 20 for r in records.values())
  assert result["header"]["experiment"] == "wgan_toy" and result["header"]["parameters"] == "generator"
  assert "| modes_captured |" in evaluation.results_markdown(result["records"], result["header"])


def test_without_a_classifier_pixel_metrics_and_a_note(programs):
  result = evaluation.evaluate_run(programs("dcgan"), num_fake=50, num_real=200, step=3)
  assert [r["metric"] for r in result["records"]] == [
    "pixel_frechet_distance",
    "pixel_kid",
    "pixel_precision",
    "pixel_recall",
    "pixel_density",
    "pixel_coverage",
  ]
  assert all(r["step"] == 3 and r["n_real"] == 200 and r["n_fake"] == 50 for r in result["records"])
  assert any(
    "no --classifier_workdir" in n and "train_classifier.py --dataset=digits" in n for n in result["header"]["notes"]
  )


def test_bad_input_is_one_error_line(programs, tmp_path):
  dcgan, wgan, classifier = programs("dcgan"), programs("wgan"), programs("classifier")
  other = tmp_path / "clf_other"
  shutil.copytree(classifier, other)
  with open(other / clf.INFO_FILE) as f:
    info = json.load(f)
  info.update(dataset="fashion_mnist", image_shape=[28, 28, 1])
  with open(other / clf.INFO_FILE, "w") as f:
    json.dump(info, f)
  (tmp_path / "empty").mkdir()
  # In fresh processes: one "error: ..." line on stderr, exit status 1, nothing written.
  cases = {
    "no run": ([f"--workdir={tmp_path / 'empty'}"], "holds no run (no flags.json)"),
    "unknown metric": ([f"--workdir={dcgan}", "--metrics=fid,fcdd"], "unknown metric 'fcdd'"),
    "classifier needed": (
      [f"--workdir={dcgan}", "--metrics=fcd"],
      "needs a classifier trained on real digits: train it with "
      "`python experiments/train_classifier.py --dataset=digits",
    ),
    "other dataset": ([f"--workdir={dcgan}", f"--classifier_workdir={other}"], "was trained on fashion_mnist"),
  }
  before = h.snapshot(dcgan)
  started = {
    name: subprocess.Popen(
      [sys.executable, EVALUATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT
    )
    for name, (args, _) in cases.items()
  }
  for name, (_, expected) in cases.items():
    returncode, _, stderr = _finish(started[name], check=False)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert returncode == 1, (name, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (name, stderr)
  assert h.snapshot(dcgan) == before
  # The same library errors in-process (experiments/launch.run prints any of them as the one line).
  for kwargs, error, expected in [
    (
      dict(workdir=dcgan, classifier_workdir=str(tmp_path / "none")),
      clf.ClassifierNotFoundError,
      "no trained classifier in",
    ),
    (dict(workdir=wgan, step="best"), CheckpointError, "has no best checkpoint"),
    (dict(workdir=wgan, step=7), CheckpointError, "no checkpoint step 7"),
    (dict(workdir=wgan, step="last"), ConfigError, "--step=last: use latest, best"),
    (dict(workdir=wgan, metrics="fcd"), ConfigError, "does not apply to this toy run"),
    (dict(workdir=dcgan, metrics="fid", inception_weights=str(tmp_path / "none.npz")), ConfigError, "no file at"),
    (dict(workdir=str(tmp_path / "missing")), CheckpointError, "does not exist"),
  ]:
    with pytest.raises(error, match=expected) as caught:
      evaluation.evaluate_run(**kwargs)
    assert isinstance(caught.value, JaxganError)
  assert h.snapshot(dcgan) == before


def dcgan_setup(**overrides):
  """The `jaxgan.runs.Setup` of a tiny dcgan.py run on the digits (every flag the recipe reads)."""
  cfg = dict(
    dataset="digits", split="train", data_dir=None, image_size=0, channels=0, convert_data=False,
    generator="dcgan", discriminator="dcgan", g_widths=["4"], d_widths=["4"], loss="non_saturating",
    real_label=1.0, n_critic=1, n_gen=1, latent_dist="normal", latent_dim=8, ema_decay=0.0, lr=2e-4, d_lr=0.0,
    b1=0.5, b2=0.999, lr_schedule="constant", decay_start=0.0, num_steps=2, batch_size=16, seed=0,
  )  # fmt: skip
  return recipes.setup({**cfg, **overrides}, experiment="dcgan")


def test_training_flags_are_checked_before_training(tmp_path):
  setup = dcgan_setup()
  with pytest.raises(ConfigError, match="--best_metric=fcd needs --eval_every > 0"):
    evaluation.training_eval(setup, eval_every=0, best_metric="fcd", classifier_workdir=None, num_samples=100)
  with pytest.raises(
    ConfigError, match="--best_metric=fcd is not computed.*pixel_frechet_distance.*need --classifier_workdir"
  ):
    evaluation.training_eval(setup, eval_every=5, best_metric="fcd", classifier_workdir=None, num_samples=100)
  assert evaluation.metric_mode("fcd") == "min" and evaluation.metric_mode("label_accuracy") == "max"
  assert evaluation.parse_metrics("") is None and evaluation.parse_metrics(["kid", "fcd"]) == ("kid", "fcd")


def test_stacked_dataset_counts_modes_with_the_base_classifier(programs):
  pytest.importorskip("jaxgan.metrics.stacked")
  setup = dcgan_setup(dataset="stacked_digits", g_widths=[], d_widths=[])
  evaluator = evaluation.ImageEvaluator(setup, classifier_workdir=programs("classifier"), num_real=300, num_fake=300)
  assert evaluator.metric_names == [
    "pixel_frechet_distance",
    "pixel_kid",
    "pixel_precision",
    "pixel_recall",
    "pixel_density",
    "pixel_coverage",
    "stacked_modes",
    "stacked_kl_to_uniform",
  ]
  floor = evaluator.floor()  # 300 real held-out stacked digits: many of the 1,000 modes, a balanced histogram
  assert 150 < floor["stacked_modes"][0] <= 300 and floor["stacked_kl_to_uniform"][0] < 1.5
  assert any("trained on digits" in note for note in evaluator.notes)
  with pytest.raises(ConfigError, match="--metrics=fcd needs a classifier trained on stacked_digits"):
    evaluation.ImageEvaluator(setup, metrics=["fcd"], classifier_workdir=programs("classifier"))


def test_translation_runs_load_and_evaluate_through_the_registry(programs):
  """Pix2Pix and CycleGAN runs restore through jaxgan.recipes and score beside the identity map."""
  from jaxgan.data import paired

  held = paired.make_paired_source("digits_edges", "test", 16)
  a, b = (x[:12].astype(np.float32) / 127.5 - 1.0 for x in held.arrays())
  identity = float(np.mean(np.abs(a - b)))
  result = evaluation.evaluate_run(programs("pix2pix"), num_fake=12)
  rows = {r["metric"]: r for r in result["records"]}
  assert result["header"]["kind"] == "paired" and result["header"]["experiment"] == "pix2pix"
  assert set(rows) == {"l1_eval", "l1_paper"} and rows["l1_eval"]["n_fake"] == 12
  assert rows["l1_eval"]["floor"] == pytest.approx(identity, rel=1e-6) and 0 < rows["l1_eval"]["value"] < 2
  with open(os.path.join(programs("pix2pix"), "eval_metrics.json")) as f:
    written = json.load(f)  # the script's final evaluation went through the same evaluator
  assert written["l1_model_eval"] == pytest.approx(rows["l1_eval"]["value"], rel=1e-6)
  assert written["l1_identity"] == pytest.approx(identity, rel=1e-6)

  result = evaluation.evaluate_run(programs("cyclegan"), num_fake=12)
  rows = {r["metric"]: r for r in result["records"]}
  assert result["header"]["kind"] == "unpaired" and result["header"]["step"] == 2
  assert set(rows) == {"cycle_error_a", "cycle_error_b", "l1_g_vs_true_b", "l1_f_vs_true_a"}
  assert rows["cycle_error_a"]["floor"] is None  # the identity map has no cycle error to compare with
  assert rows["l1_g_vs_true_b"]["floor"] == pytest.approx(identity, rel=1e-6)
  assert "| cycle_error_a |" in evaluation.results_markdown(result["records"], result["header"])
