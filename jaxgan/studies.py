r"""Studies: many configurations x K training seeds, summarised as mean ± std -- the pure half of experiments/study.py.

A GAN number from one training seed is an anecdote: published comparisons
(Lucic et al., 2018, "Are GANs Created Equal?"; Kurach et al., 2019,
compare_gan) train every configuration with many seeds and report the spread.
experiments/study.py runs the training scripts; this module holds what needs
no process, no device and no file but its own outputs:

* `Cell` / `parse_cell` -- a named list of flag overrides, written
  ``"NAME: --flag=value --other_flag"`` (the ``--cell`` flag of study.py);
  `unit_dirname` -- the directory name of a (cell, dataset) pair.
* `toy_runs`, `image_run`, `cgan_run`, `evaluate_numbers` -- the per-seed
  numbers of what the scripts write (wgan.py's ``mode_metrics.json``, gan.py /
  dcgan.py's ``eval.json``, cgan.py's ``label_accuracy.json``,
  experiments/evaluate.py's ``eval/results_step<step>.json``), as flat
  ``{metric: number}`` dicts.
* `summarize` -- mean, std (population, ddof 0, as ``mode_metrics.json``),
  min and max of one metric over seeds, computed by numpy on every value
  (a non-finite value makes the mean and std non-finite: nothing is dropped).
* `select_metrics`, `study_results`, `results_markdown`, `format_summary` --
  the table of a study: one row per (cell, dataset), every metric as
  ``mean ± std [min, max]`` over the seeds, the iterations and the wall time
  (last column: wall times differ between runs, everything else is a function
  of the flags).
* `strip_plot_figure` / `strip_plot` (named by `metric_filename`) -- one
  figure per metric with every seed a dot, the mean ± std beside it, one panel
  per dataset.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxgan import storage
from jaxgan.errors import ConfigError

__all__ = [
  "Cell",
  "DEFAULT_METRICS",
  "cgan_run",
  "evaluate_numbers",
  "format_summary",
  "image_run",
  "metric_filename",
  "parse_cell",
  "results_markdown",
  "select_metrics",
  "strip_plot",
  "strip_plot_figure",
  "study_results",
  "summarize",
  "toy_runs",
  "unit_dirname",
]

# The metrics a study tabulates when --metrics is empty: those of this list that its runs report, in this order.
DEFAULT_METRICS = (
  # 2-D mixtures (wgan.py): the PacGAN / VEEGAN protocol of the reported (EMA when kept) generator
  "modes_captured",
  "high_quality_percent",
  "reverse_kl",
  # experiments/evaluate.py with a classifier
  "stacked_modes",
  "stacked_kl_to_uniform",
  "label_accuracy",
  "fcd",
  "kid",
  "precision",
  "recall",
  # eval.json of gan.py / dcgan.py (pixel space), label_accuracy.json of cgan.py
  "accuracy",
  "pixel_frechet_distance",
  "pixel_precision",
  "pixel_recall",
  "nn_classes_covered",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STD_NOTE = "population, ddof 0"


@dataclasses.dataclass(frozen=True)
class Cell:
  """One configuration of a study: a name and the flags it sets on top of the study's base flag file."""

  name: str
  flags: tuple[str, ...] = ()

  def spec(self) -> str:
    """The ``--cell`` value that parses back to this cell."""
    return f"{self.name}: {shlex.join(self.flags)}".rstrip()


def parse_cell(spec: str) -> Cell:
  """``"NAME: --flag=value --flag2"`` -> `Cell`; one `ConfigError` naming the problem otherwise.

  NAME is letters, digits, ``_ . -`` (no ``__``: it separates the cell from
  the dataset in directory names). The flags are split like a shell line
  (quote a value with spaces) and each is one ``--name=value`` or
  ``--[no]name`` token; none is allowed (``"baseline:"``: the base alone).
  """
  name, sep, rest = spec.partition(":")
  name = name.strip()
  if not sep or not name:
    raise ConfigError(f"--cell={spec!r}: write a cell as 'NAME: --flag=value --flag2=value' (NAME, a colon, flags)")
  if not _NAME.match(name) or "__" in name:
    raise ConfigError(
      f"--cell={spec!r}: the name {name!r} must be letters, digits and _ . - (starting with a letter or digit, "
      "without '__')"
    )
  try:
    tokens = tuple(shlex.split(rest))
  except ValueError as e:
    raise ConfigError(f"cell {name}: cannot split its flags {rest.strip()!r} ({e})") from None
  for token in tokens:
    if not token.startswith("--") or len(token) < 3:
      raise ConfigError(
        f"cell {name}: {token!r} is not a flag: write each as --name=value (or --name / --noname for a switch)"
      )
  return Cell(name, tokens)


def unit_dirname(cell: str, dataset: str) -> str:
  """``<cell>__<dataset>``, the dataset reduced to a safe file name (a path keeps its base name)."""
  base = dataset.rstrip("/").rsplit("/", 1)[-1] or "dataset"
  return f"{cell}__{re.sub(r'[^A-Za-z0-9_.-]', '_', base)}"


# ---------------------------------------------------------------------------- what the scripts write


def _numbers(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
  """The finite-or-not numbers of a nested dict, flat (``coverage/classes_covered``); lists and strings skipped."""
  out = {}
  for k, v in d.items():
    if isinstance(v, bool):
      continue
    if isinstance(v, (int, float)):
      out[prefix + k] = v
    elif isinstance(v, Mapping):
      out.update(_numbers(v, f"{prefix}{k}/"))
  return out


def toy_runs(mode_metrics: Mapping[str, Any]) -> list[dict]:
  """The runs of a wgan.py ``mode_metrics.json`` (one seed, or ``--num_seeds`` seeds under ``runs``).

  Each: ``{"seed", "step", "parameters", "metrics"}``, the metrics of the
  reported generator (the EMA one when kept): ``modes_captured``,
  ``high_quality_percent``, ``reverse_kl``, ``num_modes``.
  """
  runs = mode_metrics.get("runs") or [mode_metrics]
  out = []
  for r in runs:
    reported = r["reported"]
    out.append(
      {
        "seed": int(r["seed"]),
        "step": int(r["step"]),
        "parameters": reported,
        "metrics": _numbers(r[reported]),
      }
    )
  return out


def evaluate_numbers(results: Mapping[str, Any]) -> dict[str, float]:
  """``{metric: value}`` of an experiments/evaluate.py ``results_step<step>.json`` (its records' values)."""
  return {r["metric"]: r["value"] for r in results.get("records", []) if isinstance(r.get("value"), (int, float))}


def image_run(eval_json: Mapping[str, Any], evaluated: Mapping[str, Any] | None = None) -> dict:
  """One gan.py / dcgan.py run: the numbers of ``eval.json`` (``generated``: pixel Fréchet distance,
  precision / recall, pixel-value W1, 1-NN classes covered) updated with those of experiments/evaluate.py
  (``evaluated``, its results JSON) where given -- a name both have takes evaluate.py's value."""
  metrics = _numbers(eval_json.get("generated", {}))
  metrics.pop("num_samples", None)
  if evaluated is not None:
    metrics.update(evaluate_numbers(evaluated))
  return {"step": int(eval_json["step"]), "parameters": eval_json.get("parameters"), "metrics": metrics}


def cgan_run(label_json: Mapping[str, Any], evaluated: Mapping[str, Any] | None = None) -> dict:
  """One cgan.py run: the reported generator's numbers of ``label_accuracy.json`` (accuracy,
  ``coverage/classes_covered``, fcd, ... with a classifier; pixel numbers without), updated with
  experiments/evaluate.py's where given."""
  reported = label_json.get("reported", "generator_params")
  metrics = _numbers(label_json.get(reported, {}))
  metrics.pop("num_samples", None)
  if evaluated is not None:
    metrics.update(evaluate_numbers(evaluated))
  return {"step": int(label_json["step"]), "parameters": reported, "metrics": metrics}


# ---------------------------------------------------------------------------- aggregation


def summarize(values: Sequence[float]) -> dict:
  """``{"mean", "std", "min", "max", "n", "values"}`` of one metric over seeds (numpy, std with ddof 0)."""
  x = np.asarray(values, dtype=np.float64)
  with np.errstate(invalid="ignore"):  # inf - inf in the std of a non-finite value: nan, as numpy says
    return {
      "mean": float(np.mean(x)),
      "std": float(np.std(x)),
      "min": float(np.min(x)),
      "max": float(np.max(x)),
      "n": int(x.size),
      "values": [float(v) for v in x],
    }


def select_metrics(units: Sequence[Mapping[str, Any]], requested: Sequence[str] = ()) -> list[str]:
  """The metrics to tabulate: ``requested`` (each must be reported by some run; one `ConfigError` listing
  what is reported otherwise), or those of `DEFAULT_METRICS` that some run reports."""
  reported: list[str] = []
  for unit in units:
    for run in unit["runs"]:
      reported += [m for m in run["metrics"] if m not in reported]
  if requested:
    missing = [m for m in requested if m not in reported]
    if missing:
      raise ConfigError(
        f"--metrics: no run reports {', '.join(missing)}; the runs report {', '.join(sorted(reported)) or 'nothing'}"
      )
    return list(requested)
  return [m for m in DEFAULT_METRICS if m in reported]


def study_results(header: Mapping[str, Any], units: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> dict:
  """The content of ``results.json``: ``header`` (study, script, seeds, ...) and one row per unit.

  ``units``: ``{"cell", "dataset", "flags", "mode", "runs", "wall_time_sec", ...}``
  with ``runs`` a list of ``{"seed", "step", "metrics", ...}``. A row adds
  ``summary`` (`summarize` of every metric in ``metrics`` over the runs
  reporting it) and ``iterations`` (the runs' steps); ``wall_time_sec`` is the
  sum of the units' wall times (None when one is unknown).
  """
  rows = []
  for unit in units:
    summary = {}
    for m in metrics:
      values = [r["metrics"][m] for r in unit["runs"] if m in r["metrics"]]
      if values:
        summary[m] = summarize(values)
    rows.append({**unit, "iterations": [int(r["step"]) for r in unit["runs"]], "summary": summary})
  walls = [u.get("wall_time_sec") for u in units]
  total = float(sum(walls)) if walls and None not in walls else None
  return {**header, "metrics": list(metrics), "std": STD_NOTE, "cells": rows, "wall_time_sec": total}


def _fmt(x: float) -> str:
  if not math.isfinite(x):
    return str(x)
  if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
    return f"{x:.3e}"
  return f"{x:.4g}"


def format_summary(s: Mapping[str, Any] | None) -> str:
  """``mean ± std [min, max]`` (``—`` for a metric the row lacks)."""
  if not s:
    return "—"
  if s["n"] == 1:
    return _fmt(s["mean"])
  return f"{_fmt(s['mean'])} ± {_fmt(s['std'])} [{_fmt(s['min'])}, {_fmt(s['max'])}]"


def _iterations(steps: Sequence[int]) -> str:
  lo, hi = min(steps), max(steps)
  return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"


def _wall(row: Mapping[str, Any]) -> str:
  total = row.get("wall_time_sec")
  if total is None:
    return "—"
  text = f"{total:,.0f} s"
  per_run = [t for t in row.get("wall_time_sec_per_run") or [] if t is not None]
  if row.get("mode") == "vmapped":
    text += f" ({len(row['runs'])} seeds in one process)"
  elif len(per_run) > 1:
    text += f" ({np.mean(per_run):,.0f} ± {np.std(per_run):,.0f} per seed)"
  if row.get("resumed"):
    text += ", resumed"
  return text


def results_markdown(results: Mapping[str, Any]) -> str:
  """``results.md``: a title, what the numbers are, and one table per dataset (rows: cells in study order).

  Columns: cell, its flags, seeds, iterations, one per metric (``mean ± std
  [min, max]`` over seeds), wall time last; the wall time of all cells together at the end.
  """
  metrics = results["metrics"]
  seeds = results["seeds"]
  lines = [f"# Study {results['study']}", ""]
  what = (
    f"`{results['script_path']}`"
    + (f" with `{results['base_flagfile']}`" if results.get("base_flagfile") else "")
    + f", {len(seeds)} training seed{'s' * (len(seeds) > 1)} per cell ({', '.join(map(str, seeds))}; "
    + {"vmapped": "trained together in one vmapped process per cell, `--num_seeds`", "sequential": "one run each"}[
      results["mode"]
    ]
    + ")"
  )
  extra = [f"`{f}`" for f in results.get("run_flags") or []]
  if results.get("num_steps") is not None:
    extra.append(f"`--num_steps={results['num_steps']}`")
  if extra:
    what += "; every run adds " + " ".join(extra)
  if results.get("results_file"):
    what += f"; numbers of each run's `{results['results_file']}`"
    if results.get("evaluation"):
      what += f" and of `{results['evaluation']}`"
  lines += [
    what + ".",
    "",
    f"Each metric: mean ± std [min, max] over the seeds (std: {STD_NOTE}). Wall time: seconds of the training "
    "process(es) as the study timed them (start-up, compilation and final evaluation included); it varies "
    "between runs and machines, everything else is fixed by the flags.",
    "",
  ]
  datasets: list[str] = []
  for row in results["cells"]:
    if row["dataset"] not in datasets:
      datasets.append(row["dataset"])
  header = ["cell", "flags", "seeds", "iterations", *metrics, "wall time"]
  for dataset in datasets:
    lines += [f"## {dataset}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results["cells"]:
      if row["dataset"] != dataset:
        continue
      flags = " ".join(row["flags"])
      cells = [
        row["cell"],
        f"`{flags}`" if flags else "(base)",
        str(len(row["runs"])),
        _iterations(row["iterations"]),
        *(format_summary(row["summary"].get(m)) for m in metrics),
        _wall(row),
      ]
      lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
  if results.get("wall_time_sec") is not None:
    total = results["wall_time_sec"]
    lines += [f"Wall time of all cells together: {total:,.0f} s ({total / 60:,.0f} min).", ""]
  return "\n".join(lines)


# ---------------------------------------------------------------------------- figures


def strip_plot_figure(results: Mapping[str, Any], metric: str):
  """A matplotlib Figure of ``metric``: one panel per dataset, one column per cell, every seed a dot (spread
  sideways so none hides another), the mean ± std as a bar beside them; non-finite values counted under the
  cell's name."""
  from matplotlib.figure import Figure

  rows = list(results["cells"])
  datasets: list[str] = []
  for r in rows:
    if r["dataset"] not in datasets:
      datasets.append(r["dataset"])
  width = max(3.0, 0.9 * max(sum(r["dataset"] == d for r in rows) for d in datasets) + 1.5)
  fig = Figure(figsize=(width * len(datasets) + 2.2, 4.4), dpi=100, layout="constrained")
  axes = fig.subplots(1, len(datasets), squeeze=False)[0]
  for ax, dataset in zip(axes, datasets):
    mine = [r for r in rows if r["dataset"] == dataset]
    labels = []
    for i, row in enumerate(mine):
      values = np.asarray(row["summary"].get(metric, {}).get("values", []), dtype=np.float64)
      finite = values[np.isfinite(values)]
      k = len(values)
      offsets = np.linspace(-0.3, 0.05, k) if k > 1 else np.full(k, -0.1)
      ax.scatter(
        i + offsets[np.isfinite(values)], finite, s=22, color="C0", alpha=0.8, zorder=3,
        label="one training seed" if i == 0 else None,
      )  # fmt: skip
      if len(finite):
        mean, std = float(np.mean(finite)), float(np.std(finite))
        ax.errorbar(
          i + 0.2, mean, yerr=std, fmt="s", color="black", capsize=4, markersize=5, zorder=4,
          label="mean ± std (finite seeds)" if i == 0 else None,
        )  # fmt: skip
      label = row["cell"]
      if len(finite) < k:
        label += f"\n({k - len(finite)} non-finite)"
      labels.append(label)
    ax.set_xticks(range(len(mine)))
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_xlim(-0.6, len(mine) - 0.4)
    ax.set_xlabel("cell")
    ax.set_ylabel(metric)
    ax.set_title(dataset)
    ax.grid(axis="y", alpha=0.3)
  handles, names = axes[0].get_legend_handles_labels()
  if handles:
    fig.legend(handles, names, loc="outside lower center", ncols=2, frameon=False)  # outside: hides no seed
  n = len(results["seeds"])
  fig.suptitle(f"study {results['study']}: {metric}, {n} training seed{'s' * (n > 1)} per cell")
  return fig


def strip_plot(path: str, results: Mapping[str, Any], metric: str) -> str:
  """Writes `strip_plot_figure` as a PNG at ``path`` (atomically); returns the path."""
  fig = strip_plot_figure(results, metric)
  return storage.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight", facecolor="white"))


def metric_filename(metric: str) -> str:
  """The PNG name of a metric's strip plot (``coverage/classes_covered`` -> ``coverage_classes_covered.png``)."""
  return re.sub(r"[^A-Za-z0-9_.-]", "_", metric) + ".png"
