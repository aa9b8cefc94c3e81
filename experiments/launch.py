"""Process set-up of the entry points in ``experiments/``: one-line errors, logging, multi-process start, training.

* `run(main)` -- `absl.app.run` with two changes: a flag that fails to parse
  (an unknown flag or value, a missing flagfile, a value out of range) and any
  `jaxgan.errors.JaxganError` raised by ``main`` end the program with one line
  on stderr, ``error: ...``, and exit status 2 (flags), 128 + the signal for
  a run stopped by SIGTERM / SIGINT after saving (`jaxgan.errors.Interrupted`)
  or 1 (everything else); and when the entry point has the common flags, a multi-process run
  is joined (`jaxgan.parallel.initialize_distributed`) before ``main`` touches
  a device. Orbax's per-save INFO lines are kept out of the log.
* `define_common_flags` -- the flags every experiment has (workdir, seed,
  length, cadences, devices, processes); `define_eval_flags` -- periodic
  evaluation and the best checkpoint.
* `resolved_flags` -- every flag of the entry point and of the modules beside
  it, with its value: the run's ``flags.json``.
* `train(setup)` -- the training driver every script shares: the data mesh,
  the compiled step of the run's `jaxgan.runs.Setup`, its data stream and
  `jaxgan.trainer.fit` with the cadences of the flags.

Multi-process flags (see docs/multihost.md): ``--coordinator_address``,
``--num_processes`` and ``--process_id`` (defaults: the environment variables
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), or
``--distributed`` to let `jax.distributed.initialize` detect a TPU pod or a
SLURM / Open MPI / Kubernetes cluster.
"""

from __future__ import annotations

import logging as logging_std
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
from absl import app, flags, logging

from jaxgan import parallel, storage, trainer
from jaxgan.errors import ConfigError, JaxganError
from jaxgan.recipes import gan_settings

FLAGS = flags.FLAGS


def _fail(message: str, code: int) -> None:
  """Writes the one error line to stderr and exits with ``code``."""
  sys.stdout.flush()
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  sys.exit(code)


def expand_flagfiles(argv: list[str], _seen: tuple[str, ...] = ()) -> list[str]:
  """``argv`` with every ``--flagfile=PATH`` replaced by the flags in that file, recursively.

  A flag file holds one flag per line (blank lines and lines starting with
  ``#`` or ``//`` are skipped, as absl does). A ``--flagfile=`` inside a file
  is resolved against the working directory first and then against the
  including file's own directory, so an overlay names its base beside it
  (``--flagfile=wgan_gp_grid25.flags``) and works from any directory. Later
  flags override earlier ones: the overlay's lines after the base win. A
  missing file or a cycle is a `ConfigError`.
  """
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    path = None
    if arg.startswith(("--flagfile=", "-flagfile=")):
      path = arg.split("=", 1)[1]
    elif arg in ("--flagfile", "-flagfile") and i + 1 < len(argv):
      path, i = argv[i + 1], i + 1
    if path is None:
      out.append(arg)
    else:
      out.extend(_read_flagfile(path, _seen))
    i += 1
  return out


def _read_flagfile(path: str, seen: tuple[str, ...], including: str | None = None) -> list[str]:
  candidates = [os.path.expanduser(path)]
  if including is not None and not os.path.isabs(path):
    candidates.append(os.path.join(os.path.dirname(including), path))
  found = next((c for c in candidates if os.path.isfile(c)), None)
  if found is None:
    where = f" (named in {including})" if including else ""
    raise ConfigError(f"flag file {path}{where} does not exist: check the path (relative paths start at {os.getcwd()})")
  real = os.path.realpath(found)
  if real in seen:
    raise ConfigError(f"flag file {found} includes itself (through {' -> '.join(seen)})")
  try:
    with open(found) as f:
      lines = [line.strip() for line in f]
  except (OSError, UnicodeDecodeError) as e:
    raise ConfigError(f"cannot read flag file {found}: {e}") from None
  out = []
  for line in lines:
    if not line or line.startswith(("#", "//")):
      continue
    if line.startswith(("--flagfile=", "-flagfile=")):
      out.extend(_read_flagfile(line.split("=", 1)[1], seen + (real,), including=found))
    else:
      out.append(line)
  return out


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    argv = argv[:1] + expand_flagfiles(argv[1:])
  except ConfigError as e:
    _fail(str(e), 2)
  _list_script_flags_in_help()
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(" ".join(str(e).split()).removeprefix("ERROR:: "), 2)


def _list_script_flags_in_help() -> None:
  """Makes every flag the script reads (its own, launch's, flag_groups' and its helpers') a key flag of the
  entry point, so ``--help`` lists exactly those (``--helpfull`` adds absl's and the libraries')."""
  main = sys.argv[0]
  for module, module_flags in FLAGS.flags_by_module_dict().items():
    if module != main and _is_script_module(module):
      for f in module_flags:
        FLAGS.register_key_flag_for_module(main, f)


class _QuietOrbax(logging_std.Filter):
  """Drops the INFO records orbax logs for every save; its warnings and errors still pass."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno >= logging_std.WARNING or "/orbax/" not in record.pathname


class _AbsentBackends(logging_std.Filter):
  """Drops jax's INFO line for each accelerator backend that is not installed (e.g. "Unable to initialize backend
  'tpu'" on every CPU or GPU start); a backend that is installed but fails still logs a warning."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno >= logging_std.WARNING or not record.getMessage().startswith("Unable to initialize backend")


logging_std.getLogger("jax._src.xla_bridge").addFilter(_AbsentBackends())


def run(main: Callable[[list[str]], None]) -> None:
  """Runs ``main`` under absl with one-line errors for bad input."""

  def wrapped(argv):
    logging.get_absl_handler().addFilter(_QuietOrbax())
    try:
      if "coordinator_address" in FLAGS:
        parallel.initialize_distributed(
          FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, auto=FLAGS.distributed
        )
      main(argv)
    except JaxganError as e:
      _fail(str(e), getattr(e, "exit_code", 1))  # Interrupted: 128 + the signal
    except KeyboardInterrupt:  # Ctrl-C outside training (set-up, final evaluation): the checkpoints are complete
      _fail("interrupted by SIGINT outside training; the saved checkpoints are complete: rerun the same command", 130)

  app.run(wrapped, flags_parser=_parse_flags)


def resolved_flags() -> dict:
  """Every flag defined by the entry point, by jaxgan or by a module beside the entry point, with its value."""
  out = {}
  for module, module_flags in FLAGS.flags_by_module_dict().items():
    if _is_script_module(module):
      for f in module_flags:
        out[f.name] = f.value
  return out


def _is_script_module(module: str) -> bool:
  """Whether flags of ``module`` are the script's: the entry point, jaxgan, or a module beside the entry point."""
  return (
    module in ("__main__", sys.argv[0])
    or module.startswith("jaxgan")
    or module.endswith(".py")
    or _beside_main_script(module)
  )


def _beside_main_script(module: str) -> bool:
  """Whether ``module`` sits in the entry point's directory (e.g. experiments/launch.py)."""
  main_file = getattr(sys.modules.get("__main__"), "__file__", None)
  module_file = getattr(sys.modules.get(module), "__file__", None)
  return bool(main_file and module_file) and os.path.dirname(os.path.abspath(module_file)) == os.path.dirname(
    os.path.abspath(main_file)
  )


def define_common_flags(default_steps: int, default_batch: int) -> None:
  """Flags every experiment has: workdir, seed, length, logging cadence, devices and processes."""
  flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, metrics and figures; a run resumes from it.", required=True
  )
  flags.DEFINE_integer("seed", 0, "The run's one seed: initialisation, data order and every sampling key.")
  flags.DEFINE_integer(
    "num_steps", default_steps, "Training iterations (one = n_critic D + n_gen G updates).", lower_bound=0
  )
  flags.DEFINE_integer("batch_size", default_batch, "Global batch size (split over devices).", lower_bound=1)
  flags.DEFINE_integer("log_every", 500, "Iterations between metric logs.", lower_bound=1)
  flags.DEFINE_integer("checkpoint_every", 5000, "Iterations between checkpoints.", lower_bound=1)
  flags.DEFINE_integer("sample_every", 5000, "Iterations between sample figures (0: only at the end).", lower_bound=0)
  flags.DEFINE_integer("keep_checkpoints", 3, "How many recent checkpoints to keep.", lower_bound=1)
  flags.DEFINE_integer("num_devices", None, "Devices in the data mesh (default: all).", lower_bound=1)
  flags.DEFINE_bool("skip_nonfinite", False, "Drop updates with NaN/Inf losses or gradients instead of stopping.")
  flags.DEFINE_float(
    "max_skipped_fraction",
    0.5,
    "With --skip_nonfinite: stop when more than this fraction of a log window's iterations were dropped.",
    lower_bound=0.0,
    upper_bound=1.0,
  )
  flags.DEFINE_bool(
    "tensorboard", True, "Write TensorBoard events to <workdir>/tensorboard (train/ and eval/ scalars, samples)."
  )
  flags.DEFINE_bool(
    "allow_flag_changes",
    False,
    "Resume a workdir with flags that change the training (recorded in flags_history.jsonl) instead of stopping.",
  )
  flags.DEFINE_string(
    "coordinator_address",
    os.environ.get("JAX_COORDINATOR_ADDRESS") or None,
    "host:port of process 0 in a multi-process run (default: $JAX_COORDINATOR_ADDRESS).",
  )
  flags.DEFINE_integer(
    "num_processes",
    _env_int("JAX_NUM_PROCESSES"),
    "Processes in a multi-process run (default: $JAX_NUM_PROCESSES).",
    lower_bound=1,
  )
  flags.DEFINE_integer(
    "process_id",
    _env_int("JAX_PROCESS_ID"),
    "This process's index in [0, num_processes) (default: $JAX_PROCESS_ID).",
    lower_bound=0,
  )
  flags.DEFINE_bool(
    "distributed",
    False,
    "Join a multi-process run whose coordinator jax detects itself "
    "(Cloud TPU pod, SLURM, Open MPI, Kubernetes); not needed with --coordinator_address.",
  )


def define_eval_flags(classifier: bool) -> None:
  """--eval_every and --best_metric (and --classifier_workdir when ``classifier``): periodic evaluation."""
  flags.DEFINE_integer(
    "eval_every",
    0,
    "Iterations between evaluations of the sampling generator (0: off); "
    "each appends one line to eval.jsonl (jaxgan.evaluation.training_eval).",
    lower_bound=0,
  )
  flags.DEFINE_string(
    "best_metric",
    None,
    "With --eval_every: keep the checkpoint where this evaluation number "
    "is best in checkpoints_best/ (lower is better for fcd, kid, pixel_frechet_distance, "
    "pixel_kid; higher for precision, recall, density, coverage, label_accuracy); "
    "experiments/evaluate.py --step=best evaluates it.",
  )
  if classifier:
    flags.DEFINE_string(
      "classifier_workdir",
      None,
      "Classifier of experiments/train_classifier.py for "
      "--eval_every: FCD, KID and precision/recall in its feature space (without it they are "
      "computed on pixels: pixel_frechet_distance, pixel_kid, pixel_precision, ...).",
    )


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError:
    _fail(f"environment variable {name}={value!r} is not an integer", 2)


# Flags of the scripts that only change what is written or shown, never the training trajectory.
OUTPUT_FLAGS = frozenset({
  "eval_samples", "grid_size", "classifier_workdir", "best_metric", "eval_batch", "strip_scale", "mode",
  "input_dir", "output_dir", "translate_side", "inference", "eval_only", "eval_split", "tensorboard",
})  # fmt: skip


def neutral_flags(cfg: dict) -> frozenset[str]:
  """The flags a resumed run may change: `jaxgan.trainer.NEUTRAL_FLAGS` and the output flags, but the run's length
  only when no learning-rate schedule is tied to it."""
  out = set(trainer.NEUTRAL_FLAGS) | OUTPUT_FLAGS
  if cfg.get("experiment") == "cyclegan":
    out.add("direction")  # CycleGAN trains both directions; --direction only picks the one --mode=translate runs
  if cfg.get("lr_schedule", "constant") != "constant":
    out.discard("num_steps")  # the decay is spread over num_steps: a new length changes the schedule
  return frozenset(out)


def train(
  setup,
  *,
  sample_hook: Callable[[Any, int], None] | None = None,
  eval_fn: Callable[[Any, int], dict] | None = None,
  best_metric: str | None = None,
  best_mode: str = "min",
) -> tuple[Any, float]:
  """Trains the run of ``setup`` (a `jaxgan.runs.Setup`) as its flags say; returns (final state, seconds).

  The mesh spans --num_devices; the global batch must split over it (one
  error line otherwise, before anything is written). Rerunning the same
  command resumes from the workdir.
  """
  cfg = setup.cfg
  mesh = parallel.make_data_mesh(cfg.get("num_devices"))
  parallel.check_batch_divisible(cfg["batch_size"], mesh)
  tconfig = trainer.TrainerConfig(
    workdir=os.path.abspath(cfg["workdir"]),
    num_steps=cfg["num_steps"],
    log_every=cfg["log_every"],
    checkpoint_every=cfg["checkpoint_every"],
    sample_every=cfg["sample_every"],
    keep_checkpoints=cfg["keep_checkpoints"],
    skip_nonfinite=bool(cfg.get("skip_nonfinite", False)),
    eval_every=cfg.get("eval_every", 0) or 0,
    max_skipped_fraction=cfg.get("max_skipped_fraction", 0.5),
    allow_flag_changes=bool(cfg.get("allow_flag_changes", False)),
    tensorboard=bool(cfg.get("tensorboard", True)),
  )
  if eval_fn is None and best_metric is not None:
    raise ConfigError(f"--best_metric={best_metric} needs --eval_every")
  state = setup.init_state()
  data = setup.make_data()
  start = time.perf_counter()
  try:
    state = trainer.fit(
      name=setup.experiment,
      state=state,
      train_step=setup.compile(mesh),
      data=data,
      config=tconfig,
      run_flags=cfg,
      mesh=mesh,
      sample_hook=sample_hook,
      eval_fn=eval_fn,
      best_metric=best_metric,
      best_mode=best_mode,
      neutral_flags=neutral_flags(cfg),
      learning_rates=gan_settings.learning_rates(cfg),
    )
  finally:
    if hasattr(data, "close"):
      data.close()
  return state, time.perf_counter() - start


def write_results(cfg: dict, path: str, results: dict) -> None:
  """A script's final evaluation: ``results`` as JSON at ``path`` and its numbers as TensorBoard ``eval/`` scalars.

  Process 0 writes both; ``results["step"]`` is the TensorBoard step;
  --notensorboard writes only the JSON.
  """
  if jax.process_index() != 0:
    return
  storage.dump_json(path, results)
  trainer.write_scalars(
    os.path.abspath(cfg["workdir"]), results["step"], results, enabled=bool(cfg.get("tensorboard", True))
  )
