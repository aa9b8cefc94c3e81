r"""Studies: many losses x penalties x training seeds in one command, summarised as mean ± std over the seeds.

  python experiments/study.py --flagfile=experiments/flags/studies/mode_collapse_2d.flags --workdir=/tmp/study_2d

A study is a training script (--script: wgan, gan, dcgan or cgan), a base
flag file (--base_flagfile), named cells (repeated --cell='NAME: --flag=value
--flag2=value', each a list of flag overrides on top of the base), optional
datasets (--datasets: every cell runs on every one) and K training seeds
(--num_seeds, from --seed). Every (cell, dataset) trains as subprocess(es) of
the real script in its own workdir, DIR/cells/<cell>__<dataset>/: one process
with ``--num_seeds=K`` (K seeds vmapped in one compiled step) for wgan.py
(--vmap_seeds=auto or yes), else one run per seed in seed<k>/. With
--classifier_workdir (or --eval_flags) an image run is then scored by
experiments/evaluate.py.

At the end: DIR/results.md and results.json (per cell and dataset: mean ± std
[min, max] of every metric over the seeds, iterations, wall time) and one strip
plot per metric, DIR/<metric>.png, every seed a dot (`jaxgan.studies`).

Resume: a run (or a cell) is done when its ``study_run.json``
(``study_cell.json``) exists and records the same expanded command; both are
written atomically when it finishes. Rerunning the study command skips what is
done and reruns the rest, where each script resumes from its own checkpoint: an
interrupted study ends with the table of an uninterrupted one (wall times
aside). Before anything trains, every pending cell's flags are parsed by its
script and its run is built without training (one probe process), so a bad
flag is one error line naming the cell. A failing run stops the study with one
line naming the cell, its log and the command that reruns it alone; the
finished cells are kept. --dry_run checks and prints every command and trains
nothing. See docs/studies.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import launch
from absl import flags

from jaxgan import storage, studies
from jaxgan.errors import ConfigError, Interrupted, JaxganError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS_DIR = os.path.join(ROOT, "experiments")
# script -> (results file it writes, its experiment name in jaxgan.recipes)
SCRIPTS = {
  "wgan": ("mode_metrics.json", "wgan_toy"),
  "gan": ("eval.json", "gan"),
  "dcgan": ("eval.json", "dcgan"),
  "cgan": ("label_accuracy.json", "cgan"),
}
RUN_FILE, CELL_FILE, LOG_FILE = "study_run.json", "study_cell.json", "study_log.txt"
PLAN_FILE, RESULTS_JSON, RESULTS_MD = "study_plan.json", "results.json", "results.md"
CONTROLLED = ("workdir", "seed", "num_seeds")  # set by the study for every run
TOY_METRICS = ("modes_captured", "high_quality_percent", "reverse_kl", "num_modes")  # what mode_metrics.json has

flags.DEFINE_string("workdir", None, "Directory of the study: cells/, results.md, results.json, plots.", required=True)
flags.DEFINE_enum("script", None, sorted(SCRIPTS), "Training script of every cell (experiments/<script>.py).")
flags.DEFINE_string(
  "base_flagfile",
  None,
  "Flag file every cell starts from (looked up from the working directory, beside the study's flag file, in the "
  "repository, experiments/flags/ and experiments/flags/studies/; empty: the script's defaults).",
)
flags.DEFINE_multi_string(
  "cell",
  [],
  "One cell: 'NAME: --flag=value --flag2=value' (repeat the flag for more cells; 'NAME:' alone is the base). A "
  "--flagfile= among its flags is looked up like --base_flagfile.",
)
flags.DEFINE_list("datasets", [], "Datasets every cell runs on (--dataset of each run; empty: the cell's own).")
flags.DEFINE_integer("num_seeds", 3, "Training seeds per cell: --seed .. --seed + num_seeds - 1.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "The first training seed.", lower_bound=0)
flags.DEFINE_list(
  "metrics", [], f"Metrics to tabulate and plot (empty: those of {', '.join(studies.DEFAULT_METRICS)} reported)."
)
flags.DEFINE_integer("num_steps", None, "Training iterations of every run (overrides the flag files).", lower_bound=1)
flags.DEFINE_enum(
  "vmap_seeds",
  "auto",
  ["auto", "yes", "no"],
  "yes: the K seeds of a cell in one process with --num_seeds=K (wgan.py only); no: one process per seed; auto: "
  "yes for wgan, no otherwise.",
)
flags.DEFINE_string("run_flags", "", "Flags added to every run after the cell's (e.g. '--notensorboard').")
flags.DEFINE_string(
  "classifier_workdir",
  None,
  "Classifier of experiments/train_classifier.py: score every image run with experiments/evaluate.py (FCD, KID, "
  "precision/recall, stacked mode count, label accuracy).",
)
flags.DEFINE_string(
  "eval_flags",
  "",
  "With --classifier_workdir: more flags of experiments/evaluate.py for every run (e.g. '--metrics=modes "
  "--eval_samples=26000').",
)
flags.DEFINE_string("name", None, "Name of the study in titles (default: its flag file's name).")
flags.DEFINE_bool("dry_run", False, "Check every cell's flags, print every command and train nothing.")

FLAGS = flags.FLAGS


class StudyFlagError(ConfigError):
  """A study flag or a cell's flag the script refuses (exit status 2, like a flag absl refuses)."""

  exit_code = 2


class CellFailed(JaxganError):
  """A run of a cell ended with an error."""


@dataclasses.dataclass
class Run:
  """One training process: the seeds it trains, its workdir and its flags (and evaluate.py's flags, or None)."""

  seeds: tuple[int, ...]
  workdir: str
  args: list[str]
  eval_args: list[str] | None

  def command(self, script: str) -> list[str]:
    return [sys.executable, _script_path(script), *self.args, f"--workdir={self.workdir}"]

  def eval_command(self) -> list[str] | None:
    if self.eval_args is None:
      return None
    return [sys.executable, os.path.join(EXPERIMENTS_DIR, "evaluate.py"), f"--workdir={self.workdir}", *self.eval_args]

  def signature(self, script: str) -> dict:
    """What makes a finished run reusable: the script, its flags with every flag file expanded, evaluate.py's."""
    return {"script": script, "args": launch.expand_flagfiles(self.args), "evaluate": self.eval_args}


@dataclasses.dataclass
class Unit:
  """One (cell, dataset): its directory and its runs."""

  cell: studies.Cell
  dataset: str
  directory: str
  runs: list[Run]
  mode: str

  @property
  def label(self) -> str:
    return f"cell {self.cell.name} on {self.dataset}"


def _script_path(script: str) -> str:
  return os.path.join(EXPERIMENTS_DIR, f"{script}.py")


def _flag_name(token: str) -> str:
  return token.lstrip("-").split("=", 1)[0]


def _top_flagfiles(argv: list[str]) -> list[str]:
  out = []
  for i, arg in enumerate(argv):
    if arg.startswith(("--flagfile=", "-flagfile=")):
      out.append(arg.split("=", 1)[1])
    elif arg in ("--flagfile", "-flagfile") and i + 1 < len(argv):
      out.append(argv[i + 1])
  return out


def _study_file_dirs(argv: list[str]) -> list[str]:
  """Directories of the study's flag files (those on the command line and the ones they include)."""
  dirs: list[str] = []

  def visit(path: str, including: str | None) -> None:
    candidates = [os.path.expanduser(path)]
    if including and not os.path.isabs(path):
      candidates.append(os.path.join(os.path.dirname(including), path))
    found = next((c for c in candidates if os.path.isfile(c)), None)
    if found is None or os.path.dirname(os.path.abspath(found)) in dirs:
      return
    dirs.append(os.path.dirname(os.path.abspath(found)))
    with open(found) as f:
      for line in f:
        line = line.strip()
        if line.startswith(("--flagfile=", "-flagfile=")):
          visit(line.split("=", 1)[1], found)

  for path in _top_flagfiles(argv):
    visit(path, None)
  return dirs


def _resolve_file(path: str, what: str, dirs: list[str]) -> str:
  """``path`` as an absolute file: from the working directory, beside the study's flag files, the repository,
  experiments/flags/ or experiments/flags/studies/."""
  path = os.path.expanduser(path)
  flag_dir = os.path.join(ROOT, "experiments", "flags")
  bases = list(dict.fromkeys([os.getcwd(), *dirs, ROOT, flag_dir, os.path.join(flag_dir, "studies")]))
  for base in bases:
    candidate = path if os.path.isabs(path) else os.path.join(base, path)
    if os.path.isfile(candidate):
      return os.path.abspath(candidate)
  raise StudyFlagError(f"{what} {path} does not exist (looked in {', '.join(bases)})")


def _split(value: str, what: str) -> list[str]:
  try:
    tokens = shlex.split(value or "")
  except ValueError as e:
    raise StudyFlagError(f"{what}: cannot split {value!r} ({e})") from None
  bad = [t for t in tokens if not t.startswith("--")]
  if bad:
    raise StudyFlagError(f"{what}: {bad[0]!r} is not a flag: write each as --name=value")
  return tokens


def _absolute_flagfiles(tokens: list[str], what: str, dirs: list[str]) -> list[str]:
  return [
    f"--flagfile={_resolve_file(t.split('=', 1)[1], f'{what}: flag file', dirs)}" if t.startswith("--flagfile=") else t
    for t in tokens
  ]


def _copy(tokens: list[str] | None) -> list[str] | None:
  return None if tokens is None else list(tokens)


def _display_path(path: str) -> str:
  """``path`` relative to the repository when inside it (tables do not depend on where the repo lives)."""
  rel = os.path.relpath(path, ROOT)
  return path if rel.startswith("..") else rel


def _display(cmd: list[str]) -> str:
  """A command to paste: ``python`` and the script relative to the working directory when inside it."""
  script = os.path.relpath(cmd[1])
  return shlex.join(["python", cmd[1] if script.startswith("..") else script, *cmd[2:]])


@dataclasses.dataclass
class Plan:
  name: str
  script: str
  base_flagfile: str | None
  units: list[Unit]
  mode: str
  seeds: tuple[int, ...]
  run_flags: list[str]
  evaluation: str | None


def make_plan(argv: list[str]) -> Plan:
  """The study of the parsed flags; one `StudyFlagError` for anything wrong that needs no script to see."""
  if FLAGS.script is None:
    raise StudyFlagError(f"--script is required: one of {', '.join(sorted(SCRIPTS))}")
  script = FLAGS.script
  if not FLAGS.cell:
    raise StudyFlagError("no --cell: give at least one, e.g. --cell='baseline:' (the base flag file alone)")
  dirs = _study_file_dirs(argv)
  base = _resolve_file(FLAGS.base_flagfile, "--base_flagfile", dirs) if FLAGS.base_flagfile else None
  cells: list[studies.Cell] = []
  for spec in FLAGS.cell:
    try:
      cell = studies.parse_cell(spec)
    except ConfigError as e:
      raise StudyFlagError(str(e)) from None
    if any(c.name == cell.name for c in cells):
      raise StudyFlagError(f"cell {cell.name} is defined twice: give every --cell its own name")
    cells.append(studies.Cell(cell.name, tuple(_absolute_flagfiles(list(cell.flags), f"cell {cell.name}", dirs))))
  run_flags = _absolute_flagfiles(_split(FLAGS.run_flags, "--run_flags"), "--run_flags", dirs)
  for what, tokens in [(f"cell {c.name}", c.flags) for c in cells] + [("--run_flags", run_flags)]:
    for t in tokens:
      name = _flag_name(t)
      if name in CONTROLLED:
        raise StudyFlagError(f"{what} sets --{name}: the study sets it for every run (use the study's --{name})")
      if name == "dataset" and FLAGS.datasets:
        raise StudyFlagError(f"{what} sets --dataset while --datasets={','.join(FLAGS.datasets)} sets it for all")

  unknown = [m for m in FLAGS.metrics if script == "wgan" and m not in TOY_METRICS]
  if unknown:
    raise StudyFlagError(f"--metrics={','.join(unknown)}: wgan.py reports {', '.join(TOY_METRICS)}")
  vmapped = FLAGS.vmap_seeds == "yes" or (FLAGS.vmap_seeds == "auto" and script == "wgan")
  if vmapped and script != "wgan":
    raise StudyFlagError(
      f"--vmap_seeds=yes: only experiments/wgan.py trains seeds vmapped (--num_seeds); {script}.py runs one seed "
      "per process: use --vmap_seeds=auto or no"
    )
  eval_args = None
  evaluation = None
  if FLAGS.classifier_workdir:
    if script == "wgan":
      raise StudyFlagError(
        "--classifier_workdir scores image runs with experiments/evaluate.py; wgan.py writes its own mode metrics"
      )
    classifier = os.path.abspath(os.path.expanduser(FLAGS.classifier_workdir))
    if not os.path.isdir(classifier):
      raise StudyFlagError(
        f"--classifier_workdir={FLAGS.classifier_workdir} does not exist: train it first with "
        "experiments/train_classifier.py (e.g. `python experiments/train_classifier.py --dataset=digits "
        "--workdir=/tmp/clf_digits`)"
      )
    extra = _split(FLAGS.eval_flags, "--eval_flags")
    for t in extra:
      if _flag_name(t) in ("workdir", "classifier_workdir"):
        raise StudyFlagError(f"--eval_flags sets --{_flag_name(t)}: the study sets it")
    eval_args = [f"--classifier_workdir={classifier}", *extra]
    evaluation = shlex.join(["experiments/evaluate.py", *eval_args])

  seeds = tuple(FLAGS.seed + k for k in range(FLAGS.num_seeds))
  study_dir = os.path.abspath(FLAGS.workdir)
  units: list[Unit] = []
  base_args = [f"--flagfile={base}"] if base else []
  try:
    for dataset_flag in FLAGS.datasets or [None]:
      for cell in cells:
        args = [*base_args, *cell.flags]
        if dataset_flag is not None:
          args.append(f"--dataset={dataset_flag}")
        args += run_flags
        if FLAGS.num_steps is not None:
          args.append(f"--num_steps={FLAGS.num_steps}")
        dataset = dataset_flag
        if dataset is None:
          given = [t.split("=", 1)[1] for t in launch.expand_flagfiles(args) if t.startswith("--dataset=")]
          dataset = given[-1] if given else "default"
        directory = os.path.join(study_dir, "cells", studies.unit_dirname(cell.name, dataset))
        if vmapped:
          runs = [Run(seeds, directory, [*args, f"--seed={seeds[0]}", f"--num_seeds={len(seeds)}"], None)]
        else:
          runs = [
            Run((s,), os.path.join(directory, f"seed{s}"), [*args, f"--seed={s}"], _copy(eval_args)) for s in seeds
          ]
        units.append(Unit(cell, dataset, directory, runs, "vmapped" if vmapped else "sequential"))
  except ConfigError as e:  # a flag file that a cell names is missing or includes itself
    raise StudyFlagError(str(e)) from None
  names = [u.directory for u in units]
  clash = next((n for n in names if names.count(n) > 1), None)
  if clash:
    raise StudyFlagError(f"two cells would share the directory {clash}: rename a cell or a dataset")
  top = _top_flagfiles(argv)
  name = FLAGS.name or (os.path.splitext(os.path.basename(top[0]))[0] if top else os.path.basename(study_dir))
  return Plan(name, script, base, units, "vmapped" if vmapped else "sequential", seeds, run_flags, evaluation)


# ---------------------------------------------------------------------------- pre-flight


PROBE = r"""
import json, runpy, sys
SCRIPT, EXPERIMENT = sys.argv[1], sys.argv[2]
todo = json.loads(sys.stdin.read())
sys.argv = [SCRIPT]
sys.modules["__main__"].__file__ = SCRIPT  # as when the script runs: its helpers sit beside the entry point
runpy.run_path(SCRIPT, run_name=SCRIPT)  # defines the script's flags without running it
import launch
from absl import flags
FLAGS = flags.FLAGS
out = {}
for key, argv in todo.items():
  FLAGS.unparse_flags()
  try:
    FLAGS([SCRIPT] + launch.expand_flagfiles(argv))
    cfg = launch.resolved_flags()
    if EXPERIMENT == "evaluate":  # evaluate.py: its metric groups are checked when it runs; check them now
      from jaxgan import evaluation
      evaluation.parse_metrics(cfg.get("metrics"))
    else:
      from jaxgan import recipes
      recipes.setup(cfg, experiment=EXPERIMENT)
    out[key] = {"ok": True, "dataset": cfg.get("dataset"), "num_steps": cfg.get("num_steps")}
  except flags.Error as e:
    out[key] = {"ok": False, "error": " ".join(str(e).split()).removeprefix("ERROR:: ")}
  except Exception as e:
    out[key] = {"ok": False, "error": " ".join(str(e).split()) or type(e).__name__}
print("STUDYPROBE" + json.dumps(out))
"""


def _child_env() -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
  return env


def probe(script_path: str, experiment: str, todo: dict[str, list[str]]) -> dict:
  """Parses each argv of ``todo`` with ``script_path``'s flags and builds its run (`jaxgan.recipes.setup` of
  ``experiment``; for experiment "evaluate", evaluate.py's --metrics are checked), in one process;
  ``{key: {"ok", "error" | "dataset", "num_steps"}}``."""
  env = _child_env()
  env["PYTHONPATH"] = os.pathsep.join((EXPERIMENTS_DIR, env["PYTHONPATH"]))
  env.setdefault("JAX_PLATFORMS", "cpu")  # building a run needs no accelerator
  proc = subprocess.run(
    [sys.executable, "-c", PROBE, script_path, experiment],
    input=json.dumps(todo),
    capture_output=True,
    text=True,
    env=env,
  )
  lines = [line for line in proc.stdout.splitlines() if line.startswith("STUDYPROBE")]
  if proc.returncode != 0 or not lines:
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or ["no output"]
    raise StudyFlagError(f"checking the cells' flags with {_display_path(script_path)} failed: {last[0]}")
  return json.loads(lines[-1][len("STUDYPROBE") :])


def check_units(plan: Plan, units: list[Unit]) -> None:
  """Every unit's first run parsed and built by its script (and evaluate.py's flags parsed); one error naming the
  first cell refused."""
  if not units:
    return
  todo = {str(i): [*u.runs[0].args, f"--workdir={u.runs[0].workdir}"] for i, u in enumerate(units)}
  results = probe(_script_path(plan.script), SCRIPTS[plan.script][1], todo)
  for i, unit in enumerate(units):
    r = results[str(i)]
    if not r["ok"]:
      raise StudyFlagError(
        f"{unit.label}: {r['error']} (the cell's flags: {' '.join(unit.cell.flags) or '(none)'}; check it alone: "
        f"{_display(unit.runs[0].command(plan.script))})"
      )
  evaluated = [u for u in units if u.runs[0].eval_args is not None]
  if evaluated:
    u = evaluated[0]
    results = probe(os.path.join(EXPERIMENTS_DIR, "evaluate.py"), "evaluate", {"0": u.runs[0].eval_command()[2:]})
    if not results["0"]["ok"]:
      error = results["0"]["error"]
      raise StudyFlagError(f"--eval_flags / --classifier_workdir: experiments/evaluate.py refuses them: {error}")


# ---------------------------------------------------------------------------- running


def _read_json(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _has_checkpoint(workdir: str) -> bool:
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(d.isdigit() for d in os.listdir(directory))


def _wait(proc: subprocess.Popen) -> tuple[int, list[int]]:
  """Waits for ``proc``, passing it each SIGINT / SIGTERM the study gets (the child runs in its own session, so
  a Ctrl-C reaches it once, through here: it saves a checkpoint and stops)."""
  received: list[int] = []

  def forward(signum, frame):
    del frame
    received.append(signum)
    try:
      proc.send_signal(signum)
    except ProcessLookupError:
      pass

  previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
  try:
    return proc.wait(), received
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def _execute(cmd: list[str], log_path: str, unit: Unit, run: Run) -> tuple[float, int | None]:
  """Runs ``cmd`` with its output appended to ``log_path``: (its wall time, the signal that asked the study to stop
  while it ran, if it finished all the same), or one error naming the cell."""
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with open(log_path, "a") as log:
    log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)}\n")
    log.flush()
    offset = log.tell()
    start = time.perf_counter()
    proc = subprocess.Popen(
      cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env(), cwd=os.getcwd(), start_new_session=True
    )
    rc, received = _wait(proc)
    seconds = time.perf_counter() - start
  which = f"{unit.label}" + (f" (seed {run.seeds[0]})" if unit.mode == "sequential" else "")
  if received or rc in (130, 143, -signal.SIGINT, -signal.SIGTERM):
    sig = signal.Signals(received[0] if received else (rc - 128 if rc > 0 else -rc))
    if rc == 0:
      return seconds, sig.value  # it finished before the signal: kept, then the study stops
    raise Interrupted(_interrupted(sig.value, which), 128 + sig.value)
  if rc != 0:
    with open(log_path, errors="replace") as f:
      f.seek(offset)
      lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    reason = (errors or lines or ["no output"])[-1].removeprefix("error: ")
    raise CellFailed(
      f"{which} failed (exit {rc}): {reason} [log: {log_path}]; rerun it alone: {_display(cmd)}; the finished cells "
      "are kept: rerun the study command to go on"
    )
  return seconds, None


def _interrupted(signum: int, where: str) -> str:
  return (
    f"study interrupted by {signal.Signals(signum).name} in {where}; its checkpoints and the finished cells are "
    "kept: rerun the same study command to resume"
  )


def _run_records(plan: Plan, run: Run) -> list[dict]:
  """The per-seed records of a finished run, from the files its script (and evaluate.py) wrote."""
  results_file = SCRIPTS[plan.script][0]
  path = os.path.join(run.workdir, results_file)
  data = _read_json(path)
  if data is None:
    raise CellFailed(f"{path} is missing or unreadable after the run finished")
  if plan.script == "wgan":
    records = studies.toy_runs(data)
  else:
    evaluated = None
    if run.eval_args is not None:
      eval_path = os.path.join(run.workdir, "eval", f"results_step{int(data['step'])}.json")
      evaluated = _read_json(eval_path)
      if evaluated is None:
        raise CellFailed(f"{eval_path} is missing or unreadable after experiments/evaluate.py finished")
    one = (studies.cgan_run if plan.script == "cgan" else studies.image_run)(data, evaluated)
    records = [{"seed": run.seeds[0], **one}]
  if [r["seed"] for r in records] != list(run.seeds):
    raise CellFailed(f"{path} holds seeds {[r['seed'] for r in records]}, the study expected {list(run.seeds)}")
  return records


def run_unit(plan: Plan, unit: Unit, index: int, total: int) -> dict:
  """Trains (and evaluates) every run of ``unit`` not done yet; returns the unit's record."""
  run_records = []
  for run in unit.runs:
    marker = os.path.join(run.workdir, RUN_FILE)
    signature = run.signature(plan.script)
    done = _read_json(marker)
    if done is not None and done.get("signature") == signature:
      run_records.append(done["record"])
      continue
    seeds = ", ".join(map(str, run.seeds))
    print(f"[{index}/{total}] {unit.label}: training seed{'s' * (len(run.seeds) > 1)} {seeds}", flush=True)
    resumed = _has_checkpoint(run.workdir)
    log_path = os.path.join(run.workdir, LOG_FILE)
    seconds, stop = _execute(run.command(plan.script), log_path, unit, run)
    if stop is not None:
      raise Interrupted(_interrupted(stop, unit.label), 128 + stop)
    if run.eval_args is not None:
      more, stop = _execute(run.eval_command(), log_path, unit, run)
      seconds += more
    record = {
      "seeds": list(run.seeds),
      "workdir": os.path.relpath(run.workdir, os.path.dirname(os.path.dirname(unit.directory))),
      "records": _run_records(plan, run),
      "wall_time_sec": seconds,
      "resumed": resumed,
    }
    storage.dump_json(marker, {"signature": signature, "record": record})
    run_records.append(record)
    if stop is not None:
      raise Interrupted(_interrupted(stop, unit.label), 128 + stop)
  seed_records = []
  for r in run_records:
    for rec in r["records"]:
      seed_records.append({**rec, **({"wall_time_sec": r["wall_time_sec"]} if unit.mode == "sequential" else {})})
  record = {
    "cell": unit.cell.name,
    "dataset": unit.dataset,
    "flags": [_display_flag(t) for t in unit.cell.flags],
    "mode": unit.mode,
    "directory": os.path.relpath(unit.directory, os.path.dirname(os.path.dirname(unit.directory))),
    "runs": seed_records,
    "wall_time_sec": sum(r["wall_time_sec"] for r in run_records),
    "wall_time_sec_per_run": [r["wall_time_sec"] for r in run_records] if unit.mode == "sequential" else None,
    "resumed": any(r["resumed"] for r in run_records),
  }
  return record


def _display_flag(token: str) -> str:
  if token.startswith("--flagfile="):
    return "--flagfile=" + _display_path(token.split("=", 1)[1])
  return token


def unit_signature(plan: Plan, unit: Unit) -> list[dict]:
  return [r.signature(plan.script) for r in unit.runs]


def _summary_line(record: dict, metrics: list[str]) -> str:
  parts = []
  for m in metrics:
    values = [r["metrics"][m] for r in record["runs"] if m in r["metrics"]]
    if values:
      parts.append(f"{m} {studies.format_summary(studies.summarize(values))}")
  return "; ".join(parts)


def write_plan(plan: Plan, directory: str) -> None:
  storage.dump_json(
    os.path.join(directory, PLAN_FILE),
    {
      "study": plan.name,
      "script": plan.script,
      "mode": plan.mode,
      "seeds": list(plan.seeds),
      "cells": [
        {
          "cell": u.cell.name,
          "dataset": u.dataset,
          "directory": u.directory,
          "commands": [_display(r.command(plan.script)) for r in u.runs],
          "evaluate": [_display(r.eval_command()) for r in u.runs if r.eval_args is not None],
        }
        for u in plan.units
      ],
    },
  )


def main(argv):
  del argv  # the study's flag files are read from sys.argv: their directories resolve --base_flagfile
  plan = make_plan(sys.argv)
  study_dir = os.path.abspath(FLAGS.workdir)

  def done(unit: Unit) -> dict | None:
    saved = _read_json(os.path.join(unit.directory, CELL_FILE))
    if saved is not None and saved.get("signature") == unit_signature(plan, unit):
      return saved["record"]
    return None

  pending = [u for u in plan.units if done(u) is None]
  check_units(plan, plan.units if FLAGS.dry_run else pending)
  if FLAGS.dry_run:
    for u in plan.units:
      state = "done" if u not in pending else "to run"
      print(f"{u.label} ({state}):")
      for r in u.runs:
        print("  " + _display(r.command(plan.script)))
        if r.eval_args is not None:
          print("  " + _display(r.eval_command()))
    accepted = f"every cell's flags are accepted by experiments/{plan.script}.py"
    print(f"{accepted}; {len(pending)} of {len(plan.units)} cells to run")
    return
  write_plan(plan, study_dir)
  records = []
  total = len(plan.units)
  for i, unit in enumerate(plan.units, 1):
    record = done(unit)
    if record is not None:
      print(f"[{i}/{total}] {unit.label}: done (kept from {os.path.join(unit.directory, CELL_FILE)})", flush=True)
    else:
      record = run_unit(plan, unit, i, total)
      storage.dump_json(
        os.path.join(unit.directory, CELL_FILE), {"signature": unit_signature(plan, unit), "record": record}
      )
      line = _summary_line(record, list(FLAGS.metrics) or list(studies.DEFAULT_METRICS))
      print(f"[{i}/{total}] {unit.label}: done in {record['wall_time_sec']:.0f} s; {line}", flush=True)
    records.append(record)

  metrics = studies.select_metrics(records, FLAGS.metrics)
  header = {
    "study": plan.name,
    "script": plan.script,
    "script_path": f"experiments/{plan.script}.py",
    "base_flagfile": _display_path(plan.base_flagfile) if plan.base_flagfile else None,
    "seeds": list(plan.seeds),
    "num_seeds": len(plan.seeds),
    "mode": plan.mode,
    "vmap_seeds_flag": FLAGS.vmap_seeds,
    "datasets": list(dict.fromkeys(u.dataset for u in plan.units)),
    "run_flags": [_display_flag(t) for t in plan.run_flags],
    "num_steps": FLAGS.num_steps,
    "results_file": SCRIPTS[plan.script][0],
    "evaluation": plan.evaluation,
  }
  results = studies.study_results(header, records, metrics)
  storage.dump_json(os.path.join(study_dir, RESULTS_JSON), results)
  markdown = studies.results_markdown(results)
  storage.atomic_write(os.path.join(study_dir, RESULTS_MD), lambda tmp: _write_text(tmp, markdown))
  plots = [studies.strip_plot(os.path.join(study_dir, studies.metric_filename(m)), results, m) for m in metrics]
  print(markdown)
  print(f"written: {os.path.join(study_dir, RESULTS_MD)}, {RESULTS_JSON} and {len(plots)} strip plot(s)")


def _write_text(path: str, text: str) -> None:
  with open(path, "w") as f:
    f.write(text)


if __name__ == "__main__":
  launch.run(main)
