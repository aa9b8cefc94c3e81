"""Framework-neutral parts of the step benchmarks: the cases, the flags, peak FLOP/s, the tables.

Imported by ``step_throughput.py`` (JAX), ``torch_reference.py`` (PyTorch) and
``compare.py``; it imports neither framework, so each script measures with
only its own framework loaded.

The cases (see benchmarks/README.md):

* ``dcgan`` -- Radford et al. (2015) DCGAN, G and D with BatchNorm, the
  pytorch/examples ``dcgan`` loop: BCE on logits (non-saturating G loss),
  Adam(lr 2e-4, b1 0.5, b2 0.999), one D and one G update per iteration.
* ``wgan_gp`` -- Gulrajani et al. (2017) WGAN-GP on the same DCGAN
  architecture, BatchNorm removed from the critic (the penalty is per sample),
  Wasserstein loss + 10 * gradient penalty, Adam(lr 1e-4, b1 0, b2 0.9)
  (the paper's Algorithm 1), 5 critic updates per generator update.

The multi-seed comparison (``--num_seeds``) also has ``toy_wgan_gp``: the
WGAN-GP MLPs of ``experiments/flags/wgan_gp_grid25.flags`` (ReLU MLPs, 3 hidden
layers of 128 units, 2-D data, lambda 0.1, Adam(1e-4, 0.5, 0.9), n_critic 5),
the workload ``experiments/wgan.py --num_seeds`` targets.

One *iteration* is n_critic D updates + 1 G update. ``images_per_s`` counts the
real training images the discriminator consumes: n_critic * batch per
iteration.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

MODELS = ("dcgan", "wgan_gp")
SEED_MODELS = ("dcgan", "toy_wgan_gp")
PRECISIONS = ("float32", "bfloat16")
N_CRITIC = {"dcgan": 1, "wgan_gp": 5, "toy_wgan_gp": 5}
GP_WEIGHT = {"wgan_gp": 10.0, "toy_wgan_gp": 0.1}
OPTIMIZERS = {
  "dcgan": dict(lr=2e-4, b1=0.5, b2=0.999),
  "wgan_gp": dict(lr=1e-4, b1=0.0, b2=0.9),
  "toy_wgan_gp": dict(lr=1e-4, b1=0.5, b2=0.9),
}
TOY_DEPTH = 3

# Sizes per mode. "full" is the real benchmark (a GPU); "reduced" finishes in
# well under a minute on a CPU; "tiny" is the CI smoke test.
MODES = {
  "full": dict(
    image_size=64,
    width=64,
    channels=3,
    latent_dim=100,
    batch_sizes=(64, 256),
    steps=20,
    repeats=5,
    warmup=5,
    num_seeds=8,
    seed_batch_size=64,
    precisions=PRECISIONS,
    flops_from="compiled",
    toy_width=128,
  ),
  "reduced": dict(
    image_size=16,
    width=8,
    channels=3,
    latent_dim=32,
    batch_sizes=(16,),
    steps=5,
    repeats=5,
    warmup=3,
    num_seeds=4,
    seed_batch_size=16,
    precisions=PRECISIONS,
    flops_from="lowered",
    toy_width=128,
  ),
  "tiny": dict(
    image_size=8,
    width=4,
    channels=1,
    latent_dim=8,
    batch_sizes=(4,),
    steps=2,
    repeats=1,
    warmup=1,
    num_seeds=2,
    seed_batch_size=4,
    precisions=("float32",),
    flops_from="lowered",
    toy_width=16,
  ),
}
FLOPS_FROM = ("compiled", "lowered")

# Dense peak FLOP/s per device kind (vendor data sheets). fp32 is the non-tensor-core
# peak; tf32 the dense tensor-core one that XLA and cuDNN use for float32 convolutions by default.
PEAKS = {
  "H100 SXM": {"bfloat16": 989.4e12, "float32": 66.9e12, "tf32": 494.7e12},
  "H100 PCIe": {"bfloat16": 756.0e12, "float32": 51.2e12, "tf32": 378.0e12},
  "H200": {"bfloat16": 989.4e12, "float32": 66.9e12, "tf32": 494.7e12},
  "A100": {"bfloat16": 312.0e12, "float32": 19.5e12, "tf32": 156.0e12},
}


def peak_for(device_kind: str) -> tuple[str | None, dict | None]:
  """(name, peaks) for a GPU's ``device_kind`` string, (None, None) when unknown (CPUs included)."""
  kind = device_kind.upper()
  if "H200" in kind:
    return "H200", PEAKS["H200"]
  if "H100" in kind:
    name = "H100 PCIe" if "PCIE" in kind else "H100 SXM"
    return name, PEAKS[name]
  if "A100" in kind:
    return "A100", PEAKS["A100"]
  return None, None


@dataclasses.dataclass(frozen=True)
class Case:
  """One measurement: a model at a batch size and precision.

  For ``toy_wgan_gp`` ``width`` is the MLPs' hidden width and the data are 2-D
  points; ``image_size`` and ``channels`` are unused.
  """

  model: str
  precision: str
  batch_size: int
  image_size: int
  width: int
  channels: int
  latent_dim: int

  @property
  def n_critic(self) -> int:
    return N_CRITIC[self.model]

  @property
  def data_shape(self) -> tuple[int, ...]:
    if self.model == "toy_wgan_gp":
      return (2,)
    return (self.image_size, self.image_size, self.channels)

  @property
  def key(self) -> tuple:
    return (self.model, self.precision, self.batch_size)


def _csv(kind, choices=None):
  def parse(text: str):
    items = [kind(t) for t in text.split(",") if t.strip()]
    if not items:
      raise argparse.ArgumentTypeError("empty list")
    if choices is not None:
      bad = [i for i in items if i not in choices]
      if bad:
        raise argparse.ArgumentTypeError(f"unknown {bad}: choose from {', '.join(choices)}")
    if kind is int and min(items) < 1:
      raise argparse.ArgumentTypeError("sizes must be >= 1")
    return tuple(items)

  return parse


def make_parser(description: str) -> argparse.ArgumentParser:
  """The flags shared by step_throughput.py, torch_reference.py and compare.py."""
  p = argparse.ArgumentParser(description=description)
  mode = p.add_mutually_exclusive_group()
  mode.add_argument(
    "--reduced",
    dest="mode",
    action="store_const",
    const="reduced",
    help="small sizes and few steps (the default when no GPU is found)",
  )
  mode.add_argument("--tiny", dest="mode", action="store_const", const="tiny", help="CI smoke-test sizes")
  mode.add_argument(
    "--full", dest="mode", action="store_const", const="full", help="the real benchmark sizes even without a GPU"
  )
  p.add_argument("--models", type=_csv(str, MODELS), default=MODELS)
  p.add_argument(
    "--seed_models", type=_csv(str, SEED_MODELS), default=SEED_MODELS, help="models of the --num_seeds comparison"
  )
  p.add_argument(
    "--precisions", type=_csv(str, PRECISIONS), default=None, help="default: float32,bfloat16 (float32 with --tiny)"
  )
  p.add_argument("--batch_sizes", type=_csv(int), default=None)
  for name in (
    "image_size",
    "width",
    "channels",
    "latent_dim",
    "steps",
    "repeats",
    "warmup",
    "num_seeds",
    "seed_batch_size",
    "toy_width",
  ):
    p.add_argument(f"--{name}", type=int, default=None)
  p.add_argument(
    "--flops_from",
    choices=FLOPS_FROM,
    default=None,
    help="XLA cost analysis of the compiled d/g steps (default on a GPU) or of the lowered, "
    "not yet optimised programs (no extra compiles; the default in --reduced / --tiny)",
  )
  p.add_argument("--json_out", default=None, help="write the results as JSON here")
  return p


def resolve(args: argparse.Namespace, has_gpu: bool) -> dict:
  """The mode (auto: full with a GPU, reduced without) and every size, explicit flags winning."""
  mode = args.mode or ("full" if has_gpu else "reduced")
  sizes = dict(MODES[mode])
  for name in sizes:
    value = getattr(args, name, None)
    if value is not None:
      sizes[name] = value
  for name in ("image_size", "width", "channels", "latent_dim", "steps", "repeats", "seed_batch_size", "toy_width"):
    if sizes[name] < 1:
      raise SystemExit(f"error: --{name} must be >= 1")
  if sizes["warmup"] < 0 or sizes["num_seeds"] < 0:
    raise SystemExit("error: --warmup and --num_seeds must be >= 0")
  sizes["precisions"] = tuple(sizes["precisions"])
  return {"mode": mode, **sizes, "models": tuple(args.models), "seed_models": tuple(args.seed_models)}


def cases(cfg: dict) -> list[Case]:
  return [
    Case(model, prec, b, cfg["image_size"], cfg["width"], cfg["channels"], cfg["latent_dim"])
    for model in cfg["models"]
    for prec in cfg["precisions"]
    for b in cfg["batch_sizes"]
  ]


def resolved_argv(cfg: dict) -> list[str]:
  """Flags that make another script run exactly the sizes of ``cfg``."""
  out = [
    f"--{cfg['mode']}",
    "--models=" + ",".join(cfg["models"]),
    "--precisions=" + ",".join(cfg["precisions"]),
    "--batch_sizes=" + ",".join(str(b) for b in cfg["batch_sizes"]),
  ]
  for name in ("image_size", "width", "channels", "latent_dim", "steps", "repeats", "warmup"):
    out.append(f"--{name}={cfg[name]}")
  return out


def argv_from_args(args: argparse.Namespace) -> list[str]:
  """The shared flags of a parsed command line, as flags again (for a child process)."""
  out = [f"--{args.mode}"] if args.mode else []
  out.append("--models=" + ",".join(args.models))
  out.append("--seed_models=" + ",".join(args.seed_models))
  if args.precisions is not None:
    out.append("--precisions=" + ",".join(args.precisions))
  if args.batch_sizes is not None:
    out.append("--batch_sizes=" + ",".join(str(b) for b in args.batch_sizes))
  for name in (
    "image_size",
    "width",
    "channels",
    "latent_dim",
    "steps",
    "repeats",
    "warmup",
    "num_seeds",
    "seed_batch_size",
    "toy_width",
    "flops_from",
  ):
    if getattr(args, name) is not None:
      out.append(f"--{name}={getattr(args, name)}")
  return out


def host_meta() -> dict:
  """Where and when: Python, OS, CPU count, the 1-minute load average (a shared host shows it), argv."""
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
  return {
    "python": platform.python_version(),
    "platform": platform.platform(),
    "cpu_count": os.cpu_count(),
    "load_average_1min": load,
    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "argv": sys.argv,
  }


def timing_fields(case: Case, walls: Sequence[float], cpus: Sequence[float], steps: int) -> dict:
  """Per-iteration numbers from ``repeats`` timed blocks of ``steps`` iterations each.

  ms/iteration is the median block's (robust to a block in which the process
  was descheduled on a shared host); ``ms_per_iter_min`` the fastest block's;
  ``cpu_ms_per_iter`` the median process CPU time (all threads) per
  iteration -- on a GPU the host overhead, on a shared CPU a measure that does
  not grow with other processes' load.
  """
  med = statistics.median(walls) / steps
  return {
    "ms_per_iter": 1e3 * med,
    "ms_per_iter_min": 1e3 * min(walls) / steps,
    "cpu_ms_per_iter": 1e3 * statistics.median(cpus) / steps,
    "repeats": len(walls),
    "gen_iters_per_s": 1.0 / med,
    "images_per_s": case.n_critic * case.batch_size / med,
    "block_seconds": list(walls),
  }


SEED_COLUMNS = [
  ("model", "model", "s"),
  ("precision", "precision", "s"),
  ("batch", "batch_size", "d"),
  ("K seeds", "num_seeds", "d"),
  ("vmapped seed-iters/s", "vmapped_seed_iters_per_s", ".1f"),
  ("sequential seed-iters/s", "sequential_seed_iters_per_s", ".1f"),
  ("speedup", "speedup", ".2f"),
  ("speedup by CPU time", "cpu_speedup", ".2f"),
]


def _fmt(value: Any, spec: str) -> str:
  return "-" if value is None else format(value, spec)


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
  """A GitHub-markdown table; ``columns`` are (header, key, format spec)."""
  lines = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
  for r in rows:
    lines.append("| " + " | ".join(_fmt(r.get(k), f) for _, k, f in columns) + " |")
  return "\n".join(lines)


def write_json(path: str | None, payload: dict) -> None:
  if not path:
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(payload, f, indent=2)
