r"""ms per iteration of a flag file's compiled GAN iteration, its repeated updates inlined vs scanned.

  python benchmarks/unroll.py --script=dcgan --flagfile=experiments/flags/sngan_digits32.flags
  python benchmarks/unroll.py --script=dcgan --flagfile=experiments/flags/dcgan_digits32.flags --iterations=10

Builds the run exactly as the script would (its flags parsed from the flag file,
`jaxgan.recipes.setup`), takes one batch of its training stream onto the device
and times ``jax.jit(gan.train_step)`` on it twice: with the family's default
(`jaxgan.steps.repeat_update` inlines the n_critic D updates and the n_gen G
updates) and with ``unroll=False`` (each group a `jax.lax.scan`, i.e. a while
loop). Prints compile time and the median ms/iteration of ``--repeats`` blocks
of ``--iterations`` iterations for each, and the ratio. Why: XLA:CPU runs
convolutions inside a while-loop body far slower than the same convolutions
inlined (README, "The modern toolkit"); MLP runs (experiments/wgan.py) are
about as fast either way.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import runpy
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_setup(script: str, flagfile: str):
  """The `jaxgan.runs.Setup` the script builds from ``flagfile`` (flags parsed as the script parses them)."""
  path = os.path.join(ROOT, "experiments", f"{script}.py")
  sys.path[:0] = [os.path.join(ROOT, "experiments"), ROOT]
  sys.argv = [path]
  sys.modules["__main__"].__file__ = path
  runpy.run_path(path, run_name=path)  # defines the script's flags without running its main
  import launch
  from absl import flags

  from jaxgan import recipes

  argv = [path] + launch.expand_flagfiles([f"--flagfile={flagfile}", "--workdir=/nonexistent/benchmark"])
  flags.FLAGS(argv)
  cfg = launch.resolved_flags()
  return recipes.setup(cfg, experiment={"wgan": "wgan_toy"}.get(script, script))


def time_step(step, state, batch, iterations: int, repeats: int) -> tuple[float, float]:
  """(compile seconds, median ms/iteration)."""
  import jax

  started = time.perf_counter()
  state, _ = step(state, batch)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - started
  blocks = []
  for _ in range(repeats):
    started = time.perf_counter()
    for _ in range(iterations):
      state, _ = step(state, batch)
    jax.block_until_ready(state)
    blocks.append(1000 * (time.perf_counter() - started) / iterations)
  return compile_s, statistics.median(blocks)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--script", default="dcgan", help="experiments/<script>.py whose flags the file sets")
  parser.add_argument("--flagfile", required=True)
  parser.add_argument("--iterations", type=int, default=5, help="iterations per timed block")
  parser.add_argument("--repeats", type=int, default=3, help="timed blocks (the median counts)")
  parser.add_argument("--json_out", default=None)
  args = parser.parse_args()

  import jax

  from jaxgan.families import gan

  setup = load_setup(args.script, args.flagfile)
  state = setup.init_one(setup.seeds[0])
  batch = jax.device_put(next(iter(setup.make_data())))
  results = {}
  for name, config in (("inlined", setup.config), ("scanned", dataclasses.replace(setup.config, unroll=False))):
    step = jax.jit(functools.partial(gan.train_step, config=config))
    compile_s, ms = time_step(step, state, batch, args.iterations, args.repeats)
    results[name] = {"compile_s": compile_s, "ms_per_iteration": ms}
    print(f"  {name:8s}: {ms:9.1f} ms/iteration (compile {compile_s:.1f} s)", flush=True)
  ratio = results["scanned"]["ms_per_iteration"] / results["inlined"]["ms_per_iteration"]
  print(f"{args.flagfile}: scanned / inlined = {ratio:.1f}x on {jax.devices()[0].device_kind} ({os.cpu_count()} cores)")
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump({"flagfile": args.flagfile, "results": results, "ratio": ratio, "load": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
  main()
