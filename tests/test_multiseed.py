"""K seeds vmapped in one compiled step equal K separate single-seed runs."""

import functools
import json
import os

import jax
import numpy as np
import optax
import pytest

from jaxgan import multiseed, parallel, regularizers, trainer
from jaxgan.data import toy
from jaxgan.errors import ConfigError
from jaxgan.families import gan
from jaxgan.models.mlp import ToyCritic, ToyGenerator
from jaxgan.state import create_gan_state

CONFIG = gan.Config(loss="wasserstein", n_critic=2, latent_dim=2, penalties=(regularizers.wgan_gp(1.0),), ema_decay=0.9)
STEP = functools.partial(gan.train_step, config=CONFIG)
SEEDS = (3, 11, 42)
G, D = ToyGenerator(hidden=16, depth=2), ToyCritic(hidden=16, depth=2)
TX = optax.adam(1e-3, 0.5, 0.9)
KW = dict(generator=G, discriminator=D, g_tx=TX, d_tx=TX, latent_dim=2, data_shape=(2,), use_ema=True)


def iterator(seed):
  return toy.MixtureIterator(toy.ring8(), 8, seed, n_critic=CONFIG.n_critic)


def test_vmapped_seeds_equal_separate_runs():
  num_steps = 3
  stacked = multiseed.create_multiseed_state(SEEDS, **KW)
  assert stacked.step.shape == () and multiseed.num_seeds(stacked) == 3
  assert stacked.gen.params["hidden0"]["kernel"].shape == (3, 2, 16)
  data = multiseed.StackedIterator([iterator(s) for s in SEEDS])
  step = parallel.compile_step(STEP, seeds=True, flat_metrics=False)
  for _ in range(num_steps):
    stacked, metrics = step(stacked, next(data))
  assert metrics["d_loss"].shape == (3,)

  single_step = parallel.compile_step(STEP)
  for k, seed in enumerate(SEEDS):
    state, it = create_gan_state(seed=seed, **KW), iterator(seed)
    for _ in range(num_steps):
      state, m = single_step(state, next(it))
    np.testing.assert_allclose(float(metrics["d_loss"][k]), float(m["d_loss"]), rtol=1e-4, atol=1e-5)
    mine = multiseed.unstack_state(stacked, k)
    assert int(mine.step) == num_steps == int(state.step)
    for x, y in zip(jax.tree.leaves(mine), jax.tree.leaves(state)):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
  # The seeds really are different runs.
  a, b = (multiseed.unstack_state(stacked, k).gen.params["out"]["kernel"] for k in (0, 1))
  assert not np.allclose(a, b)


def test_shared_batch_and_flat_metrics():
  stacked = multiseed.create_multiseed_state((0, 1), **KW)
  step = parallel.compile_step(STEP, seeds=True, shared_batch=True)
  stacked, metrics = step(stacked, next(iterator(0)))
  assert metrics["d_loss"].shape == () and metrics["finite"].dtype == np.bool_
  np.testing.assert_allclose(
    float(metrics["d_loss"]), 0.5 * (float(metrics["d_loss/seed0"]) + float(metrics["d_loss/seed1"])), rtol=1e-6
  )
  assert float(metrics["d_loss/seed0"]) != float(metrics["d_loss/seed1"])


def test_bad_inputs_raise_config_errors():
  with pytest.raises(ConfigError, match="distinct"):
    multiseed.create_multiseed_state((1, 1), **KW)
  other = create_gan_state(seed=0, **{**KW, "use_ema": False})
  with pytest.raises(ConfigError, match="structure"):
    multiseed.stack_states([create_gan_state(seed=0, **KW), other])
  data = multiseed.StackedIterator([iterator(0), iterator(1)])
  with pytest.raises(ConfigError, match="num_seeds"):
    data.set_state({"seeds": [{"position": 0}]})


def test_trainer_fit_runs_and_resumes_a_stacked_state(tmp_path):
  def run(num_steps):
    stacked = multiseed.create_multiseed_state((0, 1), **KW)
    data = multiseed.StackedIterator([iterator(0), iterator(1)])
    cfg = trainer.TrainerConfig(workdir=str(tmp_path), num_steps=num_steps, log_every=2, checkpoint_every=2)
    return trainer.fit(
      name="multiseed_test",
      state=stacked,
      data=data,
      config=cfg,
      batch_axis=2,
      train_step=parallel.compile_step(STEP, seeds=True),
    ), data

  state, _ = run(2)
  state, data = run(4)
  assert int(state.step) == 4 and data.get_state() == {"seeds": [{"position": 4}, {"position": 4}]}
  with open(os.path.join(tmp_path, trainer.METRICS_FILE)) as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records] == [2, 4]
  assert "d_loss/seed1" in records[-1] and np.isfinite(records[-1]["d_loss"])


def test_seed_axes_are_public_and_leave_the_iteration_counter_shared():
  stacked = multiseed.create_multiseed_state((0, 1), **KW)
  axes = multiseed.seed_axes(stacked)
  assert axes.step is None and set(jax.tree.leaves(axes)) == {0}
  assert len(jax.tree.leaves(axes)) == len(jax.tree.leaves(stacked)) - 1
