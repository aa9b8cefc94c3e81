"""The image GANs end to end: experiments/gan.py and dcgan.py, their input adapter, figures and bad input.

Shapes and ranges of the TFDS presets themselves are tested in
tests/test_data_images.py; here the presets go through the experiments'
adapter (``{"image"} -> {"x"}``, n_critic axis, checkpointable position).
"""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxgan import recipes, viz
from jaxgan.data import images as images_lib
from jaxgan.errors import ConfigError
from jaxgan.families import gan
from jaxgan.recipes import images as eu
from jaxgan.state import create_gan_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DCGAN = os.path.join(ROOT, "experiments", "dcgan.py")
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import image_gan  # noqa: E402  (the training run gan.py and dcgan.py share)

# Width flags that give each registry model its tiny test size.
TINY_WIDTHS = {
  ("g", "mlp"): ["16", "16"],
  ("d", "mlp"): ["16", "16"],
  ("d", "mlp_maxout"): ["8", "8"],
  ("g", "dcgan_mnist"): ["16", "4", "4"],
  ("d", "dcgan_mnist"): ["4", "4", "16"],
  ("g", "dcgan"): ["4"],
  ("d", "dcgan"): ["4"],
}


def make_cfg(tmp_path, **overrides):
  """Every flag value of gan.py / dcgan.py, tiny."""
  cfg = dict(
    workdir=str(tmp_path / "w"),
    seed=0,
    num_steps=2,
    batch_size=16,
    log_every=1,
    checkpoint_every=2,
    sample_every=0,
    keep_checkpoints=1,
    num_devices=None,
    skip_nonfinite=False,
    dataset="digits",
    data_dir=None,
    split="train",
    image_size=0,
    channels=0,
    convert_data=False,
    generator="dcgan",
    discriminator="dcgan",
    loss="non_saturating",
    real_label=1.0,
    n_critic=1,
    n_gen=1,
    latent_dist="normal",
    latent_dim=8,
    ema_decay=0.0,
    lr=1e-3,
    d_lr=0.0,
    b1=0.5,
    b2=0.999,
    lr_schedule="constant",
    decay_start=0.0,
    grid_size=3,
    eval_samples=40,
  )
  cfg.update(overrides)
  cfg.setdefault("g_widths", TINY_WIDTHS[("g", cfg["generator"])])
  cfg.setdefault("d_widths", TINY_WIDTHS[("d", cfg["discriminator"])])
  return cfg


# --- the input adapter on the mocked TFDS presets ---------------------------------


@pytest.mark.parametrize(
  "name, shape",
  [
    ("mnist", (28, 28, 1)),
    ("fashion_mnist", (28, 28, 1)),
    ("cifar10", (32, 32, 3)),
    ("svhn_cropped", (32, 32, 3)),
    ("celeb_a", (64, 64, 3)),
  ],
)
def test_adapter_on_mocked_presets(tmp_path, name, shape):
  cfg = make_cfg(tmp_path, dataset=name, data_dir=str(tmp_path / "tfds"), batch_size=3, n_critic=2)
  with tfds.testing.mock_data(num_examples=9):
    source, model_shape = eu.open_dataset(cfg)
    batches = eu.make_batches(source, cfg)
    first = next(batches)
    position = batches.get_state()
    second = next(batches)
    batches.set_state(position)
    again = next(batches)
  assert model_shape == shape
  assert set(first) == {"x"} and first["x"].shape == (2, 3) + shape and first["x"].dtype == np.float32
  assert -1.0 <= first["x"].min() and first["x"].max() <= 1.0
  np.testing.assert_array_equal(second["x"], again["x"])


def test_shape_mismatch_names_both_shapes_and_the_flag(tmp_path):
  with pytest.raises(ConfigError, match=r"8x8x1 images \(grayscale\) but the model is 8x8x3 \(RGB\).*--channels=1"):
    eu.open_dataset(make_cfg(tmp_path, channels=3))
  with pytest.raises(ConfigError, match=r"model is 16x16x1.*--image_size=8.*--convert_data"):
    eu.open_dataset(make_cfg(tmp_path, image_size=16))
  source, shape = eu.open_dataset(make_cfg(tmp_path, image_size=16, channels=3, convert_data=True))
  assert shape == source.images_shape == (16, 16, 3)


def test_mixed_size_folder_needs_image_size_not_convert_data(tmp_path):
  folder = tmp_path / "mixed"
  folder.mkdir()
  Image.fromarray(np.full((8, 8), 40, np.uint8)).save(folder / "a.png")
  Image.fromarray(np.full((12, 20), 90, np.uint8)).save(folder / "b.png")
  with pytest.raises(images_lib.MixedImageSizesError, match="a.png is 8x8 but b.png is 12x20; pass --image_size=N"):
    eu.open_dataset(make_cfg(tmp_path, dataset=str(folder)))
  source, shape = eu.open_dataset(make_cfg(tmp_path, dataset=str(folder), image_size=4))
  assert shape == source.images_shape == (4, 4, 1)
  np.testing.assert_array_equal(source[1]["image"], np.full((4, 4, 1), 90))
  batch = next(eu.make_batches(source, make_cfg(tmp_path, batch_size=2)))
  assert batch["x"].shape == (1, 2, 4, 4, 1)  # (n_critic, batch, H, W, C)
  with pytest.raises(ConfigError, match=r"8x8x1 images \(grayscale\) but the model is 8x8x3.*--channels=1"):
    eu.open_dataset(make_cfg(tmp_path, dataset=str(folder), image_size=8, channels=3))  # channels: --convert_data
  source, shape = eu.open_dataset(make_cfg(tmp_path, dataset=str(folder), image_size=8, channels=3, convert_data=True))
  assert shape == source.images_shape == source[1]["image"].shape == (8, 8, 3)
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "b.png")  # uniform 8x8 now: --image_size=4 alone is refused
  with pytest.raises(ConfigError, match=r"model is 4x4x1.*--image_size=8.*--convert_data"):
    eu.open_dataset(make_cfg(tmp_path, dataset=str(folder), image_size=4))
  with pytest.raises(ConfigError, match="takes 1 number"):
    eu.build_models(make_cfg(tmp_path, g_widths=["4", "4"]), (8, 8, 1))
  with pytest.raises(ConfigError, match="image size 7 does not suit dcgan"):
    eu.build_models(make_cfg(tmp_path), (7, 7, 1))


def test_dcgan_discriminator_without_batchnorm(tmp_path):
  """--nod_batchnorm: the dcgan critic has no BatchNorm (WGAN-GP / SNGAN), a bias on every convolution, and
  logits that do not depend on the rest of the batch; other discriminators refuse the flag."""
  _, disc = eu.build_models(make_cfg(tmp_path, d_batchnorm=False), (8, 8, 1))
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 1))
  variables = jax.jit(lambda x_: disc.init(jax.random.PRNGKey(1), x_, train=True))(x)
  assert "batch_stats" not in variables
  convs = [k for k in variables["params"] if k.startswith("conv")]
  assert convs and all("bias" in variables["params"][k] for k in convs)
  assert not [k for k in variables["params"] if k.startswith("bn")]
  apply = jax.jit(lambda v, x_: disc.apply(v, x_, train=True))
  alone, together = apply(variables, x[:1]), apply(variables, x)
  np.testing.assert_allclose(alone, together[:1], rtol=1e-6, atol=1e-6)
  _, with_bn = eu.build_models(make_cfg(tmp_path), (8, 8, 1))
  assert "batch_stats" in jax.eval_shape(lambda x_: with_bn.init(jax.random.PRNGKey(1), x_, train=True), x)
  with pytest.raises(ConfigError, match="--nod_batchnorm removes the BatchNorm of --discriminator=dcgan; mlp has"):
    eu.build_models(make_cfg(tmp_path, discriminator="mlp", d_batchnorm=False), (8, 8, 1))


# --- two real training steps per model, through the trainer ---------------------


@pytest.mark.parametrize(
  "overrides",
  [
    dict(generator="mlp", discriminator="mlp", loss="minimax", real_label=0.9),
    dict(generator="mlp", discriminator="mlp_maxout", n_critic=2, n_gen=2, latent_dist="uniform"),
    dict(generator="dcgan_mnist", discriminator="dcgan_mnist", real_label=0.9, n_gen=2, ema_decay=0.9),
    dict(generator="dcgan", discriminator="dcgan", loss="minimax", n_critic=2, ema_decay=0.9),
  ],
  ids=["mlp-minimax-smoothing", "maxout-2x2-uniform", "dcgan_mnist-smoothing-ema", "dcgan-minimax-ncritic2"],
)
def test_two_training_steps(tmp_path, overrides, capsys):
  cfg = make_cfg(tmp_path, **overrides)
  results = image_gan.train("gan", cfg)

  run = recipes.load_run(cfg["workdir"])
  state, saved_cfg, config = run.state, run.cfg, run.setup.config
  assert int(state.step) == 2 and results["step"] == 2
  # n_critic D and n_gen G updates per iteration went through the real steps.
  assert int(state.disc.step) == 2 * cfg["n_critic"] and int(state.gen.step) == 2 * cfg["n_gen"]
  assert config.real_label == cfg["real_label"] and config.loss == cfg["loss"]
  assert saved_cfg["experiment"] == "gan" and (state.ema_params is not None) == (cfg["ema_decay"] > 0)
  workdir = cfg["workdir"]
  records = viz.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in records] == [1, 2]
  assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in records)
  # Both networks' parameters moved in each of the two iterations.
  assert records[0]["g_param_norm"] != records[1]["g_param_norm"]
  assert records[0]["d_param_norm"] != records[1]["d_param_norm"]
  for name in ("samples/step_0000002.png", "samples/pixels_step_0000002.png", "loss_curves.png", "eval.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  grid = np.asarray(Image.open(os.path.join(workdir, "samples/step_0000002.png")))
  raw_side = max(1, 512 // (3 * 9)) * (3 * 9 + 1)  # the 3x3 grid of 8x8 images at the writer's scale
  assert grid.shape[0] > raw_side and grid.shape[1] >= raw_side  # plus the title (jaxgan.viz.grid_figure)
  generated = results["generated"]
  assert 0.0 <= generated["pixel_precision"] <= 1.0 and generated["pixel_frechet_distance"] >= 0.0
  assert sum(generated["nn_class_counts"]) == cfg["eval_samples"]
  assert "pixel FD" in capsys.readouterr().out


class _DenseBN(nn.Module):
  """z -> Dense(3) -> BatchNorm: the smallest generator with BatchNorm statistics."""

  @nn.compact
  def __call__(self, z, labels=None, *, train=True):
    return nn.BatchNorm(use_running_average=not train, momentum=0.8)(nn.Dense(3)(z))


def test_standing_stats_are_the_statistics_of_the_sampling_params():
  config = gan.Config(loss="non_saturating", latent_dim=2, ema_decay=0.5)
  tx = optax.sgd(0.1)
  state = jax.jit(
    lambda: create_gan_state(
      seed=0,
      generator=_DenseBN(),
      discriminator=_DenseBN(),
      g_tx=tx,
      d_tx=tx,
      latent_dim=2,
      data_shape=(2,),
      use_ema=True,
    )
  )()
  ema = jax.tree.map(lambda p: 2.0 * p + 0.5, state.gen.params)  # differs from the raw parameters
  state = state.replace(ema_params=ema)
  key = jax.random.PRNGKey(3)
  standing = gan.standing_batch_stats(state, config, key, num_batches=3, batch_size=50)
  # Expected: the mean over the 3 batches of each batch's mean and (biased) variance of Dense_ema(z).
  w, b = np.asarray(ema["Dense_0"]["kernel"]), np.asarray(ema["Dense_0"]["bias"])
  z = jax.jit(jax.vmap(lambda k: gan.sample_latent(k, 50, config)))(jax.random.split(key, 3))
  hs = [np.asarray(zk) @ w + b for zk in z]
  stats = standing.gen.batch_stats["BatchNorm_0"]
  np.testing.assert_allclose(stats["mean"], np.mean([h.mean(0) for h in hs], 0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats["var"], np.mean([h.var(0) for h in hs], 0), rtol=1e-4, atol=1e-5)
  assert gan.standing_batch_stats(state.replace(ema_params=None), config, key).gen.batch_stats is state.gen.batch_stats


# --- figures ----------------------------------------------------------------------


def test_interpolation_maths():
  rng = np.random.default_rng(0)
  z0, z1 = rng.normal(size=(4, 50)), rng.normal(size=(4, 50))
  z1 *= (np.linalg.norm(z0, axis=1) / np.linalg.norm(z1, axis=1))[:, None]
  for method in ("linear", "slerp"):
    path = viz.interpolate_latents(z0, z1, 7, method)
    assert path.shape == (4, 7, 50)
    np.testing.assert_allclose(path[:, 0], z0, atol=1e-5)
    np.testing.assert_allclose(path[:, -1], z1, atol=1e-5)
  norms = np.linalg.norm(viz.interpolate_latents(z0, z1, 7, "slerp"), axis=-1)
  np.testing.assert_allclose(norms, norms[:, :1] * np.ones((1, 7)), rtol=1e-5)  # slerp stays on the sphere
  mid = np.linalg.norm(viz.interpolate_latents(z0, z1, 7, "linear")[:, 3], axis=-1)
  assert np.all(mid < 0.9 * norms[:, 0])  # the straight line cuts inside it
  np.testing.assert_allclose(viz.slerp(z0[0], z0[0], 0.3), z0[0], atol=1e-5)  # parallel: no NaN


def test_figures(tmp_path):
  rng = np.random.default_rng(0)
  imgs = rng.uniform(-1, 1, (9, 8, 8, 1)).astype(np.float32)
  real = np.where(rng.uniform(size=(50, 8, 8, 1)) < 0.7, -1.0, 1.0)
  assert viz.pixel_value_w1(real, real) == 0.0
  assert viz.pixel_value_w1(real, np.zeros_like(real)) == pytest.approx(1.0)
  paths = [
    viz.pixel_histogram(str(tmp_path / "h.png"), real, imgs),
    viz.interpolation_strips(str(tmp_path / "i.png"), imgs.reshape(3, 3, 8, 8, 1), row_labels=list("abc")),
    viz.vector_arithmetic_figure(
      str(tmp_path / "v.png"), [("a", imgs[:3], imgs[3]), ("b", imgs[:3], imgs[4]), ("c", imgs[:3], imgs[5])], imgs
    ),
  ]
  for path in paths:
    assert Image.open(path).size[0] > 100


# --- experiments/dcgan.py as a program ----------------------------------------------
# The programs start together, as soon as the first test asks for them, and run while the in-process
# tests compile; their checks come last in the file.

TINY_RUN = [
  "--dataset=digits",
  "--num_steps=4",
  "--batch_size=16",
  "--g_widths=4",
  "--d_widths=4",
  "--latent_dim=8",
  "--ema_decay=0.9",
  "--log_every=2",
  "--checkpoint_every=4",
  "--sample_every=2",
  "--eval_samples=40",
  "--grid_size=4",
]

BAD_INPUTS = {
  "unknown_dataset": (["--dataset=no_such_dataset_xyz"], "unknown dataset 'no_such_dataset_xyz'"),
  "gray_data_rgb_model": (["--channels=3"], "8x8x1 images (grayscale) but the model is 8x8x3 (RGB): set --channels=1"),
  "empty_folder": (["--dataset={empty}"], "has no .png/.jpg/.jpeg images"),
  "mixed_folder": (["--dataset={mixed}"], "mixes image sizes: a.png is 4x4 but b.png is 4x5; pass --image_size=N"),
  # Data fails before training, with the file named (a truncated PNG used to crash mid-training, and every resume).
  "truncated_png": (["--dataset={truncated}"], "cannot decode image {truncated}/b.png (image file is truncated"),
  "text_named_png": (["--dataset={text}"], "cannot decode image {text}/b.png (cannot identify image file"),
  "npz_negative_label": (["--dataset={base}/negative.npz"], "label -1 is outside [0, 3): labels must be the class ids"),
  "npz_huge_label": (["--dataset={base}/huge.npz"], "a label is 1000000000, which would make 1000000001 classes"),
  "npz_object_array": (["--dataset={base}/objects.npz"], "cannot be read (Object arrays cannot be loaded"),
  "npz_not_an_archive": (["--dataset={base}/text.npz"], "cannot be read (not an .npz archive)"),
  "npz_float_0_255": (["--dataset={base}/float255.npz"], "float array 'images' has values in [0, 255]; float images"),
}


def _snapshot(directory):
  return sorted(
    (os.path.relpath(os.path.join(r, f), directory), os.path.getsize(os.path.join(r, f)))
    for r, _, files in os.walk(directory)
    for f in files
  )


programs_base = []  # the fixture's folder, for the expected messages that name files


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
  """Starts experiments/dcgan.py once on good input and once per bad input; yields a result getter."""
  base = tmp_path_factory.mktemp("programs")
  (base / "empty").mkdir()
  (base / "mixed").mkdir()
  Image.fromarray(np.zeros((4, 4), np.uint8)).save(base / "mixed" / "a.png")
  Image.fromarray(np.zeros((4, 5), np.uint8)).save(base / "mixed" / "b.png")
  for folder in ("truncated", "text"):
    (base / folder).mkdir()
    Image.fromarray(np.full((32, 32), 200, np.uint8)).save(base / folder / "a.png")  # b.png's size: not a mixed folder
  noise = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
  Image.fromarray(noise).save(base / "truncated" / "b.png")
  os.truncate(base / "truncated" / "b.png", os.path.getsize(base / "truncated" / "b.png") // 2)
  (base / "text" / "b.png").write_text("not an image")
  images = np.zeros((4, 8, 8), np.uint8)
  np.savez(base / "negative.npz", images=images, labels=np.array([0, 1, -1, 2]))
  np.savez(base / "huge.npz", images=images, labels=np.array([0, 1, 10**9, 2]))
  np.savez(base / "objects.npz", images=np.array([np.zeros((8, 8)), np.zeros((4, 4))], dtype=object))
  (base / "text.npz").write_text("not an archive")
  np.savez(base / "float255.npz", images=np.linspace(0, 255, 4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8))
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  started = {}

  def start(case, args, workdir):
    proc = subprocess.Popen(
      [sys.executable, DCGAN, *args, f"--workdir={workdir}"],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env=env,
      cwd=ROOT,
    )
    started[case] = (workdir, _snapshot(workdir) if workdir.exists() else None, proc)

  start("good", TINY_RUN, base / "run")
  (base / "mixed_many").mkdir()
  for i in range(8):  # 4 sizes, non-square among them: resized to --image_size at load, no --convert_data
    size = ((8, 8), (12, 10), (16, 16), (6, 9))[i % 4]
    Image.fromarray(np.full(size, 30 * i, np.uint8)).save(base / "mixed_many" / f"{i}.png")
  mixed_run = [f"--dataset={base / 'mixed_many'}", "--image_size=8", "--batch_size=4", "--eval_samples=10"]
  start("mixed_resized", [*TINY_RUN[1:], *mixed_run, "--num_steps=2", "--checkpoint_every=2"], base / "mixed_run")
  for case, (args, _) in BAD_INPUTS.items():
    workdir = base / f"w_{case}"
    workdir.mkdir()
    (workdir / "keep.txt").write_text("an existing run")
    paths = dict(
      empty=base / "empty", mixed=base / "mixed", truncated=base / "truncated", text=base / "text", base=base
    )
    start(case, [a.format(**paths) for a in args] + ["--num_steps=2"], workdir)
  programs_base.append(base)
  done = {}

  def result(case):
    if case not in done:
      workdir, before, proc = started[case]
      stdout, stderr = proc.communicate(timeout=600)
      done[case] = dict(
        code=proc.returncode, stdout=stdout, stderr=stderr, workdir=workdir, before=before, after=_snapshot(workdir)
      )
    return done[case]

  yield result
  for _, _, proc in started.values():
    if proc.poll() is None:
      proc.kill()


@pytest.fixture(autouse=True)
def _start_programs_early(programs):
  """Every test asks for the programs, so the first one starts them."""


def test_dcgan_script_writes_figures_and_metrics(programs):
  run = programs("good")
  assert run["code"] == 0, run["stderr"][-3000:]
  workdir = run["workdir"]
  for name in (
    "metrics.jsonl",
    "flags.json",
    "eval.json",
    "loss_curves.png",
    "samples/step_0000002.png",
    "samples/step_0000004.png",
    "samples/step_0000004_raw.png",
    "samples/pixels_step_0000004.png",
  ):
    assert (workdir / name).stat().st_size > 0, name
  assert [r["step"] for r in viz.read_metrics(str(workdir / "metrics.jsonl"))] == [2, 4]
  assert json.loads((workdir / "flags.json").read_text())["experiment"] == "dcgan"
  assert "dcgan digits step 4: pixel FD" in run["stdout"]
  run = recipes.load_run(str(workdir))  # the explore.py path: flags.json -> recipe -> checkpoint
  assert run.step == 4 and run.setup.info["image_shape"] == (8, 8, 1) and run.state.ema_params is not None


def test_dcgan_script_trains_on_a_mixed_size_folder_with_image_size(programs):
  run = programs("mixed_resized")
  assert run["code"] == 0, run["stderr"][-3000:]
  assert "-> 8x8x1 images" in run["stderr"] and "step 2: pixel FD" in run["stdout"]
  assert json.loads((run["workdir"] / "flags.json").read_text())["image_size"] == 8
  assert [r["step"] for r in viz.read_metrics(str(run["workdir"] / "metrics.jsonl"))] == [2]


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_with_one_line(programs, case):
  run = programs(case)
  lines = [line for line in run["stderr"].splitlines() if line.strip()]
  base = programs_base[0]
  expected = BAD_INPUTS[case][1].format(truncated=base / "truncated", text=base / "text")
  assert run["code"] != 0
  assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], run["stderr"]
  assert run["after"] == run["before"]
