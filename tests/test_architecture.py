"""The shape of the library: no import cycle inside jaxgan/, no utils/common modules, every family on one API.

The import graph is read from the source with Python's ``ast`` (every
``import`` and ``from ... import`` anywhere in a module, function-level ones
included: a lazy import that dodges a cycle is still a cycle).
"""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jaxgan"


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The jaxgan modules ``path`` imports (``from jaxgan import x`` counts as jaxgan.x when x is a module)."""
  name = _module_name(path)
  package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
  out = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
      for alias in node.names:
        candidate = f"{base}.{alias.name}"
        out.add(candidate if candidate in modules else base)
  return {m for m in out if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
  files = sorted(PACKAGE.rglob("*.py"))
  modules = {_module_name(f) for f in files}
  return {_module_name(f): _imports(f, modules) for f in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle of ``graph`` as a list of modules (first == last), or None."""
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(node):
    state[node] = 1
    stack.append(node)
    for dep in sorted(graph[node]):
      if state.get(dep) == 1:
        return stack[stack.index(dep) :] + [dep]
      if dep not in state:
        found = visit(dep)
        if found:
          return found
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_the_import_graph_of_jaxgan_has_no_cycle():
  graph = import_graph()
  assert len(graph) > 40 and "jaxgan.families.gan" in graph["jaxgan.recipes.images"]
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_named_utils_or_common():
  names = {p.stem for p in PACKAGE.rglob("*.py")} | {p.stem for p in (ROOT / "experiments").glob("*.py")}
  assert not names & {"utils", "util", "common", "helpers", "misc"}


def test_every_family_exposes_the_same_small_api():
  from jaxgan.families import FAMILIES

  assert set(FAMILIES) == {"gan", "pix2pix", "cyclegan"}
  for name, family in FAMILIES.items():
    for member in ("Config", "init_state", "train_step", "sample"):
      assert callable(getattr(family, member, None)), (name, member)


def test_every_registered_experiment_names_an_existing_script():
  from jaxgan import recipes

  scripts = {"gan": "gan", "dcgan": "dcgan", "cgan": "cgan", "wgan_toy": "wgan", "pix2pix": "pix2pix"}
  scripts["cyclegan"] = "cyclegan"
  assert set(recipes.EXPERIMENTS) == set(scripts)
  for script in scripts.values():
    assert (ROOT / "experiments" / f"{script}.py").exists()


ENTRY_POINTS = sorted(
  p.name for p in (ROOT / "experiments").glob("*.py") if 'if __name__ == "__main__"' in p.read_text()
)


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_every_experiment_answers_help(script):
  proc = subprocess.run(
    [sys.executable, str(ROOT / "experiments" / script), "--help"],
    capture_output=True,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT)),
    timeout=120,
  )
  # absl's --help prints the usage and exits with status 1.
  assert proc.returncode in (0, 1) and not proc.stderr.strip() and "--workdir" in proc.stdout, proc.stderr[-2000:]
