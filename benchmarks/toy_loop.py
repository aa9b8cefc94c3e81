r"""The README's main job: jaxgan's trainer against a bare scan-fused loop of the same maths, ms per iteration.

  python benchmarks/toy_loop.py                                    # the grid recipe, 2,000 iterations each
  python benchmarks/toy_loop.py --flagfile=experiments/flags/wgan_gp_ring8.flags --iterations=1000

Both sides train the recipe of the flag file (default
``experiments/flags/wgan_gp_grid25.flags``): WGAN-GP with ReLU MLPs of
--g_widths / --d_widths, batch --batch_size, --n_critic critic updates per
generator update, Adam(--lr, --b1, --b2) with --lr_schedule over each
network's own updates, the generator EMA (--ema_decay).

* **bare**: that maths written directly with flax + optax, nothing else: no
  metrics, no NaN guard, no host work. The real points are drawn on device
  inside the compiled program, and ``--fuse`` iterations (default 100) run per
  compiled call in one ``lax.scan``; after one warm-up call, the whole
  ``--iterations`` are timed with one ``block_until_ready`` at the end.
* **jaxgan**: ``experiments/wgan.py`` with the same flag file in a fresh
  process, ``--num_steps=--iterations`` (a schedule over the benchmark's length,
  so both sides run the same kind of schedule), no figures, one checkpoint at
  the end, a log line every ``--iterations / 10``. Its ms/iteration is
  1000 / the trainer's own steady ``steps_per_sec`` of the last log line
  (measured after the first, compiling iteration, without checkpoint, log,
  evaluation and hook time; `jaxgan.trainer`): data input, the compiled step
  with its metrics and NaN guard, and the trainer's per-iteration host work.

Each side runs ``--repeats`` times (default 3), alternating, and the medians
count. Printed: ms/iteration of each and jaxgan / bare. ``--json_out`` writes them
with the machine's CPU count and load average. Runs one side after the other,
never both at once; on a 2-core CPU the other work of the machine counts, so
compare figures from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import launch  # noqa: E402

from jaxgan.data import toy  # noqa: E402

DEFAULT_FLAGFILE = os.path.join(ROOT, "experiments", "flags", "wgan_gp_grid25.flags")


def recipe(flagfile: str) -> dict:
  """The flags of a flag file (nested files expanded) as {name: string value}."""
  out = {}
  for arg in launch.expand_flagfiles([f"--flagfile={flagfile}"]):
    name, _, value = arg.lstrip("-").partition("=")
    out[name] = value
  return out


class MLP(nn.Module):
  widths: tuple[int, ...]
  out: int

  @nn.compact
  def __call__(self, x):
    for w in self.widths:
      x = nn.relu(nn.Dense(w)(x))
    return nn.Dense(self.out)(x)


def bare_loop(cfg: dict, iterations: int, fuse: int, seed: int = 0) -> float:
  """ms/iteration of the bare fused WGAN-GP loop of ``cfg`` (see the module docstring)."""
  widths = lambda key: tuple(int(w) for w in cfg[key].split(","))  # noqa: E731
  batch, n_critic, latent = int(cfg["batch_size"]), int(cfg.get("n_critic", 5)), int(cfg.get("latent_dim", 2))
  gp, ema_decay = float(cfg.get("gp_weight", 0.1)), float(cfg.get("ema_decay", 0.0))
  lr, b1, b2 = float(cfg["lr"]), float(cfg["b1"]), float(cfg["b2"])
  decay = cfg.get("lr_schedule", "constant") == "linear_decay"
  g_net, d_net = MLP(widths("g_widths"), 2), MLP(widths("d_widths"), 1)
  mixture = toy.get_mixture(cfg["dataset"])
  means = jnp.asarray(mixture.means_array())

  def tx(num_updates):
    rate = optax.linear_schedule(lr, 0.0, num_updates) if decay else lr
    return optax.adam(rate, b1=b1, b2=b2)

  g_tx, d_tx = tx(iterations), tx(iterations * n_critic)
  key = jax.random.PRNGKey(seed)
  g_params = g_net.init(jax.random.fold_in(key, 1), jnp.zeros((1, latent)))
  d_params = d_net.init(jax.random.fold_in(key, 2), jnp.zeros((1, 2)))
  ema = jax.tree.map(jnp.copy, g_params)
  state = (g_params, d_params, g_tx.init(g_params), d_tx.init(d_params), ema, jnp.zeros((), jnp.int32))

  def real_points(k):
    mode_key, noise_key = jax.random.split(k)
    idx = jax.random.randint(mode_key, (batch,), 0, means.shape[0])
    return means[idx] + mixture.std * jax.random.normal(noise_key, (batch, 2))

  def d_loss(d_params, g_params, k):
    kz, kx, ke = jax.random.split(k, 3)
    real = real_points(kx)
    fake = g_net.apply(g_params, jax.random.normal(kz, (batch, latent)))
    critic = lambda x: d_net.apply(d_params, x)[:, 0]  # noqa: E731
    eps = jax.random.uniform(ke, (batch, 1))
    mixed = eps * real + (1 - eps) * fake
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(mixed)  # per-sample gradients: the MLP mixes no samples
    penalty = jnp.mean((jnp.sqrt(jnp.sum(grads**2, axis=1) + 1e-12) - 1.0) ** 2)
    return jnp.mean(critic(fake)) - jnp.mean(critic(real)) + gp * penalty

  def g_loss(g_params, d_params, k):
    fake = g_net.apply(g_params, jax.random.normal(k, (batch, latent)))
    return -jnp.mean(d_net.apply(d_params, fake))

  def iteration(state, _):
    g_params, d_params, g_opt, d_opt, ema, step = state
    k = jax.random.fold_in(key, step)

    def critic_update(carry, c):
      d_params, d_opt = carry
      grads = jax.grad(d_loss)(d_params, g_params, jax.random.fold_in(k, c))
      updates, d_opt = d_tx.update(grads, d_opt, d_params)
      return (optax.apply_updates(d_params, updates), d_opt), None

    (d_params, d_opt), _ = jax.lax.scan(critic_update, (d_params, d_opt), jnp.arange(n_critic))
    grads = jax.grad(g_loss)(g_params, d_params, jax.random.fold_in(k, n_critic))
    updates, g_opt = g_tx.update(grads, g_opt, g_params)
    g_params = optax.apply_updates(g_params, updates)
    ema = optax.incremental_update(g_params, ema, 1.0 - ema_decay) if ema_decay else ema
    return (g_params, d_params, g_opt, d_opt, ema, step + 1), None

  run = jax.jit(lambda s: jax.lax.scan(iteration, s, None, length=fuse)[0], donate_argnums=0)
  state = jax.block_until_ready(run(state))  # compile + one warm-up call
  calls = max(1, iterations // fuse)
  start = time.perf_counter()
  for _ in range(calls):
    state = run(state)
  jax.block_until_ready(state)
  return 1000.0 * (time.perf_counter() - start) / (calls * fuse)


def jaxgan_trainer(flagfile: str, iterations: int, extra: list[str]) -> tuple[float, float]:
  """(ms/iteration from the trainer's steady steps_per_sec, wall seconds of the process) of experiments/wgan.py."""
  with tempfile.TemporaryDirectory(prefix="toy_loop_") as workdir:
    log_every = max(1, iterations // 10)
    cmd = [
      sys.executable,
      os.path.join(ROOT, "experiments", "wgan.py"),
      f"--flagfile={flagfile}",
      f"--num_steps={iterations}",
      f"--log_every={log_every}",
      f"--checkpoint_every={iterations}",
      "--sample_every=0",
      "--notensorboard",
      "--eval_samples=500",
      f"--workdir={workdir}",
      *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
      sys.exit(f"error: experiments/wgan.py failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
  rate = [r["steps_per_sec"] for r in records if "steps_per_sec" in r][-1]
  return 1000.0 / rate, wall


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--flagfile", default=DEFAULT_FLAGFILE, help="the recipe (a wgan.py flag file)")
  p.add_argument("--iterations", type=int, default=2000, help="iterations timed on each side")
  p.add_argument("--fuse", type=int, default=100, help="bare loop: iterations per compiled call")
  p.add_argument("--repeats", type=int, default=3, help="alternating runs of each side; the medians count")
  p.add_argument("--json_out", default=None)
  p.add_argument("extra", nargs="*", help="more wgan.py flags for the jaxgan side (after --)")
  args = p.parse_args(argv)
  cfg = recipe(args.flagfile)
  bares, ours, walls = [], [], []
  for _ in range(args.repeats):  # alternating, so a change of the machine's load hits both sides alike
    bares.append(bare_loop(cfg, args.iterations, min(args.fuse, args.iterations)))
    ms, wall = jaxgan_trainer(args.flagfile, args.iterations, args.extra)
    ours.append(ms)
    walls.append(wall)
  bare, mine = statistics.median(bares), statistics.median(ours)
  result = {
    "flagfile": os.path.relpath(args.flagfile, ROOT),
    "iterations": args.iterations,
    "repeats": args.repeats,
    "bare_ms_per_iteration": bare,
    "jaxgan_ms_per_iteration": mine,
    "ratio": mine / bare,
    "bare_ms_each": bares,
    "jaxgan_ms_each": ours,
    "jaxgan_process_wall_s_each": walls,
    "cpu_count": os.cpu_count(),
    "loadavg": os.getloadavg(),
    "device": jax.devices()[0].device_kind,
  }
  print(f"{result['flagfile']}, {args.iterations} iterations each, {result['device']} ({os.cpu_count()} cores)")
  each = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
  print(f"  bare fused loop : {bare:7.2f} ms/iteration (median of {each(bares)})")
  print(f"  jaxgan trainer  : {mine:7.2f} ms/iteration (median of {each(ours)})")
  print(f"  jaxgan / bare   : {mine / bare:7.3f}")
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  main()
