"""NaN/Inf guard of `trainer.fit`: stop with the step and network named, or drop the update.

NaN is injected into the real data of one iteration of a tiny WGAN-GP on the
8-Gaussian ring, so the critic's loss and gradients become NaN there.
"""

import functools
import json
import os

import jax
import numpy as np
import optax
import pytest

from jaxgan import parallel, regularizers, trainer
from jaxgan.checkpoint import Checkpointer
from jaxgan.data import toy
from jaxgan.errors import NonFiniteError
from jaxgan.families import gan
from jaxgan.models.mlp import ToyCritic, ToyGenerator
from jaxgan.state import create_gan_state

BAD_ITERATION = 5  # 1-based: the 5th iteration's real batch is NaN


class NaNAt:
  """A MixtureIterator whose batches are all NaN at the 1-based iterations ``bad(iteration)`` picks."""

  def __init__(self, inner, bad=lambda iteration: iteration == BAD_ITERATION):
    self._inner, self._bad = inner, bad

  def __iter__(self):
    return self

  def __next__(self):
    iteration = self._inner.position + 1
    batch = next(self._inner)
    if self._bad(iteration):
      batch = {"x": np.full(np.shape(batch["x"]), np.nan, np.float32)}
    return batch

  def get_state(self):
    return self._inner.get_state()

  def set_state(self, state):
    self._inner.set_state(state)


def _fit(workdir, skip_nonfinite, num_steps=8, checkpoint_every=2):
  config = gan.Config(
    loss="wasserstein",
    n_critic=2,
    latent_dim=2,
    penalties=(regularizers.wgan_gp(0.1),),
    skip_nonfinite=skip_nonfinite,
  )
  state = create_gan_state(
    seed=0,
    generator=ToyGenerator(hidden=8, depth=1),
    discriminator=ToyCritic(hidden=8, depth=1),
    g_tx=optax.adam(1e-3),
    d_tx=optax.adam(1e-3),
    latent_dim=2,
    data_shape=(2,),
  )
  mesh = parallel.make_data_mesh(1)
  train_step = parallel.compile_step(functools.partial(gan.train_step, config=config), mesh=mesh)
  data = NaNAt(toy.MixtureIterator(toy.ring8(), 32, seed=0, n_critic=2))
  tconfig = trainer.TrainerConfig(
    workdir=str(workdir),
    num_steps=num_steps,
    log_every=1,
    checkpoint_every=checkpoint_every,
    keep_checkpoints=10,
    skip_nonfinite=skip_nonfinite,
  )
  return trainer.fit(name="nan_test", state=state, train_step=train_step, data=data, config=tconfig, mesh=mesh)


def _restore(workdir, step):
  from reliability_harness import restore_step

  return restore_step(str(workdir), step)


def test_nan_stops_naming_step_and_network_and_keeps_last_good_checkpoint(tmp_path):
  with pytest.raises(NonFiniteError) as info:
    _fit(tmp_path, skip_nonfinite=False)
  message = str(info.value)
  # The critic's update failed first; the generator's, trained against the NaN critic, after it.
  assert f"in the discriminator loss or gradients at iteration {BAD_ITERATION}" in message
  assert "last good checkpoint is step 4" in message and "--skip_nonfinite" in message
  ckpt = Checkpointer(os.path.join(tmp_path, "checkpoints"))
  assert ckpt.all_steps() == [2, 4]  # nothing at or after the bad iteration
  ckpt.close()
  assert all(np.all(np.isfinite(v)) for v in _restore(tmp_path, 4).values() if v.dtype.kind == "f")
  with open(tmp_path / "nonfinite_metrics.json") as f:
    bad = json.load(f)
  assert bad["step"] == BAD_ITERATION and bad["d_finite"] is False
  assert not np.isfinite(bad["d_loss"])
  with open(tmp_path / "metrics.jsonl") as f:
    assert [json.loads(line)["step"] for line in f] == [1, 2, 3, 4]


def test_skip_nonfinite_drops_the_update_and_training_continues(tmp_path):
  final = _fit(tmp_path, skip_nonfinite=True, checkpoint_every=1)
  assert int(final.step) == 8
  leaves = jax.tree.leaves(jax.device_get(final))
  assert all(np.all(np.isfinite(x)) for x in leaves if np.asarray(x).dtype.kind == "f")
  before, after = _restore(tmp_path, BAD_ITERATION - 1), _restore(tmp_path, BAD_ITERATION)
  disc = [k for k in before if k.startswith("disc/")]
  gen = [k for k in before if k.startswith("gen/params/")]
  # The critic's updates of the NaN iteration were dropped (params, optimiser state and its
  # step counter unchanged); the generator's update of that iteration was applied.
  assert disc and all(before[k].tobytes() == after[k].tobytes() for k in disc)
  assert any(before[k].tobytes() != after[k].tobytes() for k in gen)
  with open(tmp_path / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  assert [r["skipped_nonfinite"] for r in records] == [int(r["step"] == BAD_ITERATION) for r in records]
  assert all(np.isfinite(r["d_loss"]) for r in records if r["step"] != BAD_ITERATION)
  assert "d_loss" not in records[BAD_ITERATION - 1]  # every update of that window was dropped
  assert not os.path.exists(tmp_path / "nonfinite_metrics.json")


def test_skip_nonfinite_stops_when_a_window_is_mostly_dropped(tmp_path):
  """--skip_nonfinite with every update non-finite: one error, not an untrained model saved and reported."""
  config = gan.Config(
    loss="wasserstein", n_critic=2, latent_dim=2, penalties=(regularizers.wgan_gp(0.1),), skip_nonfinite=True
  )
  state = create_gan_state(
    seed=0,
    generator=ToyGenerator(hidden=8, depth=1),
    discriminator=ToyCritic(hidden=8, depth=1),
    g_tx=optax.adam(1e-3),
    d_tx=optax.adam(1e-3),
    latent_dim=2,
    data_shape=(2,),
  )
  step = parallel.compile_step(functools.partial(gan.train_step, config=config), mesh=parallel.make_data_mesh(1))
  data = NaNAt(toy.MixtureIterator(toy.ring8(), 32, seed=0, n_critic=2), bad=lambda iteration: True)
  tconfig = trainer.TrainerConfig(
    workdir=str(tmp_path), num_steps=30, log_every=5, checkpoint_every=20, skip_nonfinite=True
  )
  with pytest.raises(NonFiniteError, match=r"10 of the last 10 iterations up to 10 had NaN/Inf.*not progressing"):
    trainer.fit(name="all_nan", state=state, train_step=step, data=data, config=tconfig)
  assert not os.path.exists(tmp_path / "checkpoints" / "20")  # nothing saved from a run that did not train
