r"""Throughput of jaxgan's compiled GAN iteration: ms/iteration, images/s, compile time, FLOPs, MFU.

  python benchmarks/step_throughput.py --json_out=/tmp/jax_steps.json          # full sizes on a GPU
  python benchmarks/step_throughput.py --reduced                               # ~50 s of CPU time

For each case (DCGAN-64 and WGAN-GP-64, see `bench_common`; float32 and
bfloat16 compute; batch 64 and 256) it builds the `GANState`, compiles
``parallel.compile_step(gan.train_step)`` (state donated) ahead of time, runs
``--warmup`` iterations, then times ``--repeats`` blocks of ``--steps``
iterations on one device-resident batch: no host transfer inside a block, one
``block_until_ready`` at its end; ms/iteration is the median block's.
The input pipeline is not part of the measurement.

FLOPs per iteration come from XLA's cost analysis
(``jax.jit(f).lower(...).compile().cost_analysis()``). XLA counts a ``while``
loop's body once whatever its trip count, so the scanned `train_step` would
under-count the n_critic D updates; the script instead analyses `gan.d_update`
and `gan.g_update` on their own and uses
``n_critic * flops(d_step) + n_gen * flops(g_step)`` (the train step's own
count is kept in the JSON as ``xla_train_step_flops``). In the full mode the
two are compiled for this; ``--reduced`` and ``--tiny`` analyse the lowered,
not yet optimised programs instead (no extra compiles, within ~3% of the
compiled count for these models; ``--flops_from`` chooses). These are the FLOPs
XLA executes (a G forward pass in every D update included), not an analytic
model count. MFU = FLOPs / time / peak, with the dense peak of the device kind
(`bench_common.PEAKS`: bf16 tensor-core peak for bfloat16; for float32 both the
fp32 peak and the TF32 tensor-core peak that XLA uses by default for float32
convolutions on Ampere and Hopper). On a CPU only the achieved GFLOP/s is given.

``--num_seeds=K`` (0 to skip) also times K states vmapped in one compiled step
(`jaxgan.multiseed`) against the same K single-seed runs one after the other
(one compile, reused), at ``--seed_batch_size`` (64), for DCGAN and for the
toy-MLP WGAN-GP of experiments/wgan.py (``--seed_models``).

Without a GPU the script runs in ``--reduced`` mode (16 px, width 8, batch
16, 5 x 5 timed iterations); ``--full`` forces the real sizes, ``--tiny`` is the CI smoke test.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common as bc  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxgan import multiseed, parallel, precision, regularizers  # noqa: E402
from jaxgan.families import gan  # noqa: E402
from jaxgan.models.dcgan import DCGANDiscriminator, DCGANGenerator  # noqa: E402
from jaxgan.models.mlp import ToyCritic, ToyGenerator  # noqa: E402
from jaxgan.state import create_gan_state  # noqa: E402


@functools.cache
def build(case: bc.Case):
  """(step config, create_gan_state kwargs) for ``case``; the modules follow its precision policy.

  Cached: states built from one call share their modules and optimisers (the
  static parts of the pytree), so one compiled step accepts all of them.
  """
  policy = precision.get_policy(case.precision)
  gen = DCGANGenerator(image_size=case.image_size, channels=case.channels, width=case.width)
  if case.model == "toy_wgan_gp":
    gen = ToyGenerator(hidden=case.width, depth=bc.TOY_DEPTH)
    disc = ToyCritic(hidden=case.width, depth=bc.TOY_DEPTH)
    config = gan.Config(
      loss="wasserstein",
      n_critic=case.n_critic,
      latent_dim=case.latent_dim,
      penalties=(regularizers.wgan_gp(bc.GP_WEIGHT[case.model]),),
    )
  elif case.model == "dcgan":
    disc = DCGANDiscriminator(image_size=case.image_size, width=case.width)
    config = gan.Config(loss="non_saturating", n_critic=1, latent_dim=case.latent_dim)
  else:
    disc = DCGANDiscriminator(image_size=case.image_size, width=case.width, use_batchnorm=False)
    config = gan.Config(
      loss="wasserstein",
      n_critic=case.n_critic,
      latent_dim=case.latent_dim,
      penalties=(regularizers.wgan_gp(bc.GP_WEIGHT[case.model]),),
    )
  opt = bc.OPTIMIZERS[case.model]
  tx = optax.adam(opt["lr"], b1=opt["b1"], b2=opt["b2"])
  kwargs = dict(
    generator=precision.apply_policy(gen, policy),
    discriminator=precision.apply_policy(disc, policy),
    g_tx=tx,
    d_tx=tx,
    latent_dim=case.latent_dim,
    data_shape=case.data_shape,
  )
  return config, kwargs


def random_batch(case: bc.Case, key: jax.Array, leading: tuple[int, ...] = ()) -> dict:
  """A device-resident batch in [-1, 1], shape (*leading, n_critic, B, *data_shape)."""
  shape = leading + (case.n_critic, case.batch_size) + case.data_shape
  return {"x": jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)}


def compiled_flops(compiled) -> float | None:
  """FLOPs of a compiled program by XLA's cost analysis (None if the backend gives none)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


def iteration_flops(state, batch: dict, config: gan.Config, source: str = "compiled") -> dict:
  """n_critic * flops(d_update) + n_gen * flops(g_update), each analysed on its own.

  ``source="compiled"`` analyses the optimised programs XLA runs (two extra
  compiles); ``"lowered"`` the programs as traced, before XLA's
  optimisations (no compile; within a few per cent of the compiled count for
  these models, see BENCHMARKS.md).
  """
  one = {"x": batch["x"][0]}
  key = jax.random.PRNGKey(0)
  counts = []
  for fn in (gan.d_update, gan.g_update):
    lowered = jax.jit(fn, static_argnums=3).lower(state, one, key, config)
    counts.append(compiled_flops(lowered.compile() if source == "compiled" else lowered))
  d, g = counts
  total = None if d is None or g is None else config.n_critic * d + config.n_gen * g
  return {"flops_per_iter": total, "d_step_flops": d, "g_step_flops": g, "flops_from": source}


def _timed_loop(step_fn, state, batch, iters: int):
  """``iters`` calls with no host transfer, one sync at the end; (wall s, CPU s, state, metrics)."""
  wall, cpu = time.perf_counter(), time.process_time()
  metrics = None
  for _ in range(iters):
    state, metrics = step_fn(state, batch)
  jax.block_until_ready((state, metrics))
  return time.perf_counter() - wall, time.process_time() - cpu, state, metrics


def _measure(step_fn, state, batch, steps: int, repeats: int):
  walls, cpus = [], []
  for _ in range(repeats):
    wall, cpu, state, metrics = _timed_loop(step_fn, state, batch, steps)
    walls.append(wall)
    cpus.append(cpu)
  return walls, cpus, state, metrics


# Compiled single-seed train steps by case, reused by the multi-seed comparison.
_COMPILED: dict = {}


def compile_train_step(case: bc.Case, config: gan.Config, state, batch) -> tuple[Any, float]:
  """``parallel.compile_step(gan.train_step)`` compiled ahead of time for ``case`` (and the seconds it took)."""
  if case not in _COMPILED:
    start = time.perf_counter()
    step = functools.partial(gan.train_step, config=config)
    compiled = parallel.compile_step(step).lower(state, batch).compile()
    _COMPILED[case] = compiled, time.perf_counter() - start
  return _COMPILED[case]


def bench_case(
  case: bc.Case, num_steps: int, warmup: int, peaks: dict | None, flops_from: str = "compiled", repeats: int = 1
) -> dict:
  """Times ``repeats`` blocks of ``num_steps`` compiled iterations of ``case`` after ``warmup`` ones."""
  config, kwargs = build(case)
  state = create_gan_state(seed=0, **kwargs)
  batch = random_batch(case, jax.random.PRNGKey(1))
  flops = iteration_flops(state, batch, config, flops_from)
  compiled, compile_s = compile_train_step(case, config, state, batch)
  xla_train_step_flops = compiled_flops(compiled)
  if warmup:
    _, _, state, _ = _timed_loop(compiled, state, batch, warmup)
  walls, cpus, state, metrics = _measure(compiled, state, batch, num_steps, repeats)

  out = {
    "model": case.model,
    "precision": case.precision,
    "batch_size": case.batch_size,
    "image_size": case.image_size,
    "width": case.width,
    "channels": case.channels,
    "latent_dim": case.latent_dim,
    "n_critic": case.n_critic,
    "steps": num_steps,
    "warmup": warmup,
    "compile_s": compile_s,
    **bc.timing_fields(case, walls, cpus, num_steps),
    **flops,
    "xla_train_step_flops": xla_train_step_flops,
    "finite": bool(metrics["finite"]),
  }
  achieved = None if flops["flops_per_iter"] is None else flops["flops_per_iter"] * out["gen_iters_per_s"]
  out["achieved_gflops_per_s"] = None if achieved is None else achieved / 1e9
  out["peak_tflops_per_s"] = out["mfu"] = out["mfu_vs_tf32"] = None
  if peaks is not None and achieved is not None:
    out["peak_tflops_per_s"] = peaks[case.precision] / 1e12
    out["mfu"] = achieved / peaks[case.precision]
    if case.precision == "float32":
      out["mfu_vs_tf32"] = achieved / peaks["tf32"]
  return out


def bench_multiseed(case: bc.Case, num_seeds: int, num_steps: int, warmup: int, repeats: int = 1) -> dict:
  """K seeds vmapped in one step vs the same K runs one after the other (median of ``repeats`` blocks)."""
  config, kwargs = build(case)
  seeds = list(range(num_seeds))
  batches = random_batch(case, jax.random.PRNGKey(2), leading=(num_seeds,))

  stacked = multiseed.create_multiseed_state(seeds, **kwargs)
  start = time.perf_counter()
  step = functools.partial(gan.train_step, config=config)
  vmapped = parallel.compile_step(step, seeds=True, flat_metrics=False).lower(stacked, batches).compile()
  compile_vmap = time.perf_counter() - start
  if warmup:
    _, _, stacked, _ = _timed_loop(vmapped, stacked, batches, warmup)
  walls, cpus, stacked, metrics = _measure(vmapped, stacked, batches, num_steps, repeats)
  t_vmap, cpu_vmap = statistics.median(walls), statistics.median(cpus)
  del stacked

  states = [create_gan_state(seed=s, **kwargs) for s in seeds]
  one = [jax.tree.map(functools.partial(lambda k, x: x[k], k), batches) for k in seeds]
  single, compile_single = compile_train_step(case, config, states[0], one[0])
  for k in seeds:
    if warmup:
      _, _, states[k], _ = _timed_loop(single, states[k], one[k], warmup)
  walls, cpus = [], []
  for _ in range(repeats):
    start, cpu = time.perf_counter(), time.process_time()
    for k in seeds:
      for _ in range(num_steps):
        states[k], _ = single(states[k], one[k])
    jax.block_until_ready(states)
    walls.append(time.perf_counter() - start)
    cpus.append(time.process_time() - cpu)
  t_seq, cpu_seq = statistics.median(walls), statistics.median(cpus)
  iters = num_seeds * num_steps
  return {
    "model": case.model,
    "precision": case.precision,
    "batch_size": case.batch_size,
    "width": case.width,
    "n_critic": case.n_critic,
    "num_seeds": num_seeds,
    "steps": num_steps,
    "repeats": repeats,
    "warmup": warmup,
    "vmapped_compile_s": compile_vmap,
    "single_compile_s": compile_single,
    "vmapped_s": t_vmap,
    "sequential_s": t_seq,
    "vmapped_seed_iters_per_s": iters / t_vmap,
    "sequential_seed_iters_per_s": iters / t_seq,
    "vmapped_images_per_s": iters * case.n_critic * case.batch_size / t_vmap,
    "sequential_images_per_s": iters * case.n_critic * case.batch_size / t_seq,
    "speedup": t_seq / t_vmap,
    "vmapped_cpu_s": cpu_vmap,
    "sequential_cpu_s": cpu_seq,
    "cpu_speedup": cpu_seq / cpu_vmap,
    "finite": bool(np.all(np.asarray(metrics["finite"]))),
  }


CASE_COLUMNS = [
  ("model", "model", "s"),
  ("precision", "precision", "s"),
  ("batch", "batch_size", "d"),
  ("ms/iter", "ms_per_iter", ".2f"),
  ("CPU ms/iter", "cpu_ms_per_iter", ".2f"),
  ("G it/s", "gen_iters_per_s", ".1f"),
  ("images/s", "images_per_s", ".0f"),
  ("compile s", "compile_s", ".1f"),
  ("GFLOP/iter", "gflops_per_iter", ".3f"),
  ("achieved GFLOP/s", "achieved_gflops_per_s", ".1f"),
  ("MFU", "mfu", ".1%"),
  ("MFU vs TF32", "mfu_vs_tf32", ".1%"),
]


def run(cfg: dict) -> dict:
  """Every case of ``cfg`` (see `bench_common.resolve`) and the multi-seed comparison."""
  device = jax.devices()[0]
  peak_name, peaks = bc.peak_for(device.device_kind) if device.platform == "gpu" else (None, None)
  results = []
  for case in bc.cases(cfg):
    r = bench_case(case, cfg["steps"], cfg["warmup"], peaks, cfg["flops_from"], cfg["repeats"])
    r["gflops_per_iter"] = None if r["flops_per_iter"] is None else r["flops_per_iter"] / 1e9
    results.append(r)
    print(
      f"  {case.model} {case.precision} batch {case.batch_size}: {r['ms_per_iter']:.2f} ms/iter, "
      f"{r['images_per_s']:.0f} images/s (compile {r['compile_s']:.1f} s)",
      flush=True,
    )
  seeds = []
  if cfg["num_seeds"] > 1:
    for model in cfg["seed_models"]:
      toy = model == "toy_wgan_gp"
      case = bc.Case(
        model,
        cfg["precisions"][0],
        cfg["seed_batch_size"],
        cfg["image_size"],
        cfg["toy_width"] if toy else cfg["width"],
        cfg["channels"],
        2 if toy else cfg["latent_dim"],
      )
      seeds.append(bench_multiseed(case, cfg["num_seeds"], cfg["steps"], cfg["warmup"], cfg["repeats"]))
      r = seeds[-1]
      print(
        f"  {model} x{r['num_seeds']} seeds: vmapped {r['vmapped_seed_iters_per_s']:.1f} seed-iters/s, "
        f"sequential {r['sequential_seed_iters_per_s']:.1f} ({r['speedup']:.2f}x)",
        flush=True,
      )
  import flax
  import jaxlib

  meta = {
    "framework": "jax",
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "flax": flax.__version__,
    "optax": optax.__version__,
    "backend": jax.default_backend(),
    "device_kind": device.device_kind,
    "num_devices": jax.device_count(),
    "peak_device": peak_name,
    "peaks": peaks,
    **bc.host_meta(),
  }
  return {
    "meta": meta,
    "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
    "cases": results,
    "multiseed": seeds,
  }


def print_report(report: dict) -> None:
  meta = report["meta"]
  print(
    f"\njaxgan step throughput: {report['config']['mode']} mode on {meta['backend']} "
    f"({meta['device_kind']}), jax {meta['jax']}"
  )
  print(bc.format_table(report["cases"], CASE_COLUMNS))
  if report["multiseed"]:
    print("\nmany seeds in one compiled step (jaxgan.multiseed) vs the same runs one after the other")
    print(bc.format_table(report["multiseed"], bc.SEED_COLUMNS))


def main(argv=None) -> None:
  args = bc.make_parser(__doc__.splitlines()[0]).parse_args(argv)
  cfg = bc.resolve(args, has_gpu=jax.default_backend() == "gpu")
  print(
    f"mode {cfg['mode']}: image {cfg['image_size']} px, width {cfg['width']}, batches {cfg['batch_sizes']}, "
    f"{cfg['warmup']} warm-up + {cfg['repeats']} x {cfg['steps']} timed iterations",
    flush=True,
  )
  report = run(cfg)
  print_report(report)
  bc.write_json(args.json_out, report)


if __name__ == "__main__":
  main()
