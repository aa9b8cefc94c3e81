"""The README's "Your own loss, penalty or step" examples, run as printed.

Each example block is executed as it stands in README.md (its /tmp workdir
moved under pytest's tmp_path), trains on ring8 for 300 iterations through
`jaxgan.parallel.compile_step` and `jaxgan.trainer.fit`, and is then checked:

* the loss it computes, against a value computed by hand on a fixed batch
  (a linear critic D(x) = w.x + b and a constant generator G(z) = c make
  every discriminator output known);
* resume: 150 iterations, then the same command to 300, ends with the same
  bits as the uninterrupted run.
"""

import math
import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan import losses
from jaxgan.families import gan

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
MAX_LINES = 30


def example_blocks() -> dict[str, str]:
  """The ```python blocks of README.md that start with ``# example: NAME``."""
  out = {}
  for block in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S):
    first = block.splitlines()[0]
    if first.startswith("# example: "):
      out[first.removeprefix("# example: ").strip()] = block
  return out


BLOCKS = example_blocks()


@pytest.fixture
def run_example(tmp_path):
  """exec(setup + example) with the example's /tmp paths moved into tmp_path; returns the namespace."""
  namespaces = []

  def run(name):
    ns = {}
    exec(compile(BLOCKS["setup"], "README.md:setup", "exec"), ns)
    exec(compile(BLOCKS[name].replace('"/tmp/', f'"{tmp_path}/'), f"README.md:{name}", "exec"), ns)
    namespaces.append(ns)
    return ns

  yield run
  losses.LOSSES.pop("my_ragan", None)


def test_the_three_examples_are_there_and_short():
  assert set(BLOCKS) == {"setup", "loss", "penalty", "step", "toolkit"}
  for name in ("loss", "penalty", "step"):
    lines = BLOCKS[name].strip().splitlines()
    assert len(lines) <= MAX_LINES, (name, len(lines))
    assert "update.update" not in BLOCKS[name] and "value_and_grad" not in BLOCKS[name]  # no step code copied


# ---------------------------------------------------------------------------- a known discriminator


class ConstantGenerator(nn.Module):
  @nn.compact
  def __call__(self, z):  # a plain module: the model contract adapts it
    return nn.Dense(2)(z)


class LinearCritic(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(x)[:, 0]


W, B, C = np.array([0.6, -1.7], np.float32), np.float32(0.3), np.array([0.5, -0.25], np.float32)
X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5], [0.3, -0.8]], np.float32)


def known_state(config, disc_step=0):
  """G(z) = C for every z, D(x) = W.x + B; SGD at rate 0, so updates leave the parameters alone."""
  state = gan.init_state(
    config,
    seed=0,
    generator=ConstantGenerator(),
    discriminator=LinearCritic(),
    g_tx=optax.sgd(0.0),
    d_tx=optax.sgd(0.0),
    data_shape=(2,),
  )
  gen = {"Dense_0": {"kernel": jnp.zeros((config.latent_dim, 2)), "bias": jnp.asarray(C)}}
  disc = {"Dense_0": {"kernel": jnp.asarray(W)[:, None], "bias": jnp.asarray([B])}}
  return state.replace(
    gen=state.gen.replace(params=gen), disc=state.disc.replace(params=disc, step=jnp.asarray(disc_step, jnp.int32))
  )


def softplus(x):
  return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


REAL = X @ W + B  # D(real) of every sample
FAKE = float(C @ W + B)  # D(G(z)), the same for every z


def leaves_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def assert_resume_is_bit_exact(ns, config, workdir, straight, **kwargs):
  ns["fit_ring8"](config, str(workdir), num_steps=150, **kwargs)
  resumed = ns["fit_ring8"](config, str(workdir), num_steps=300, **kwargs)
  assert int(resumed.step) == 300 and leaves_equal(resumed, straight)


# ---------------------------------------------------------------------------- the examples


def test_relativistic_average_loss(run_example, tmp_path):
  ns = run_example("loss")
  state = ns["state"]
  assert int(state.step) == 300 and int(state.disc.step) == 300
  config = gan.Config(loss="my_ragan", latent_dim=2)
  batch = {"x": jnp.asarray(X)}
  _, d_metrics = gan.d_update(known_state(config), batch, jax.random.PRNGKey(1), config)
  _, g_metrics = gan.g_update(known_state(config), batch, jax.random.PRNGKey(2), config)
  real_rel, fake_rel = REAL - FAKE, FAKE - REAL.mean()
  d_expected = softplus(-real_rel).mean() + softplus(fake_rel)
  g_expected = softplus(real_rel).mean() + softplus(-fake_rel)
  assert float(d_metrics["d_adv_loss"]) == pytest.approx(d_expected, rel=1e-5)
  assert float(g_metrics["g_loss"]) == pytest.approx(g_expected, rel=1e-5)
  assert_resume_is_bit_exact(ns, config, tmp_path / "resumed", state)


def test_dragan_penalty_with_a_decaying_weight(run_example, tmp_path):
  ns = run_example("penalty")
  state, config = ns["state"], ns["config"]
  assert int(state.step) == 300
  # The critic's input gradient is W everywhere, so the penalty is (|W| - 1)^2 wherever x^ lands;
  # after 150 of the 300 D updates the linear schedule is at 10 * (1 - 150 / 300) = 5.
  _, m = gan.d_update(known_state(config, disc_step=150), {"x": jnp.asarray(X)}, jax.random.PRNGKey(3), config)
  penalty = (math.hypot(*W) - 1.0) ** 2
  adversarial = softplus(-REAL).mean() + softplus(FAKE)
  assert float(m["dragan"]) == pytest.approx(penalty, rel=1e-5)
  assert float(m["dragan_weight"]) == pytest.approx(5.0)
  assert float(m["d_adv_loss"]) == pytest.approx(adversarial, rel=1e-5)
  assert float(m["d_loss"]) == pytest.approx(adversarial + 5.0 * penalty, rel=1e-5)
  assert_resume_is_bit_exact(ns, config, tmp_path / "resumed", state)


def test_simultaneous_step_on_three_vmapped_seeds(run_example, tmp_path):
  ns = run_example("step")
  stacked, config, step = ns["stacked"], ns["config"], ns["step"]
  assert int(stacked.step) == 300 and stacked.key.shape == (3, 2)
  # The loss actually used: non-saturating D and G losses of the known critic and generator.
  new, m = step(known_state(config), {"x": jnp.asarray(X)[None]})
  assert float(m["d_loss"]) == pytest.approx(softplus(-REAL).mean() + softplus(FAKE), rel=1e-5)
  assert float(m["g_loss"]) == pytest.approx(softplus(-FAKE), rel=1e-5) and bool(m["finite"])
  # Simultaneous: G's update saw the discriminator of the start of the iteration, not the updated one.
  start = known_state(config).replace(disc=known_state(config).disc.replace(tx=optax.sgd(0.5)))
  new, _ = jax.jit(step)(start, {"x": jnp.asarray(X)[None]})
  _, g_key = jax.random.split(jax.random.fold_in(start.key, 0))
  alone, _ = gan.g_update(start, {"x": jnp.asarray(X)}, g_key, config)
  assert leaves_equal(new.gen, alone.gen) and not leaves_equal(new.disc.params, start.disc.params)
  # Run 1 of the vmapped three is a single run of seed 1, up to float rounding (tolerance of
  # tests/test_multiseed.py; compared after 5 iterations, before GAN dynamics amplify the rounding).
  assert ns["seed1"].key.shape == (2,)
  few = ns["fit_ring8"](config, str(tmp_path / "few"), step_fn=step, num_steps=5, seeds=(0, 1, 2))
  single = ns["fit_ring8"](config, str(tmp_path / "single"), step_fn=step, num_steps=5, seeds=(1,))
  for x, y in zip(jax.tree.leaves(ns["multiseed"].unstack_state(few, 1)), jax.tree.leaves(single)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
  assert_resume_is_bit_exact(ns, config, tmp_path / "resumed", stacked, step_fn=step, seeds=(0, 1, 2))


def test_toolkit_example_trains(run_example):
  """The "modern toolkit" block: its config and networks train (n_critic cut to 1 for compile time)."""
  import dataclasses
  import functools

  ns = run_example("toolkit")
  config = dataclasses.replace(ns["config"], n_critic=1)
  tx = optax.adam(2e-4, b1=0.0, b2=0.9)
  nets = dict(generator=ns["generator"], discriminator=ns["discriminator"], data_shape=(32, 32, 1))
  state = gan.init_state(config, seed=0, g_tx=tx, d_tx=tx, **nets)
  step = jax.jit(functools.partial(gan.train_step, config=config))
  x = jax.random.uniform(jax.random.PRNGKey(1), (1, 8, 32, 32, 1), minval=-1.0, maxval=1.0)
  for _ in range(2):
    state, metrics = step(state, {"x": x})
  assert bool(metrics["finite"]) and int(state.step) == 2
  assert {"dragan_penalty", "bcr_real", "bcr_fake", "lecam"} <= set(metrics)
  assert float(state.extra["penalties"]["lecam"]["anchor_real"]) != 0.0
  variables = ns["sn_dcgan"].init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)), train=False)
  assert any(jax.tree_util.keystr(p).endswith("/u']") for p, _ in jax.tree_util.tree_leaves_with_path(variables))
