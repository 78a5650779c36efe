"""The library's shape: layers without cycles or upward imports, short functions.

Layers, bottom to top (ARCHITECTURE.md): `core` (the shared facts, standard
library only), the root modules (`atomic`, `architectures`, `workdir`), then
`data` and `models` (independent of each other), `patches`, `eval`, `train`,
`report`. A module may import its own package and the layers below it, never
a layer above or beside it. Imports inside functions count: a deferred import
is still a dependency.
"""

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "k4p1"
LAYERS = {"core": -1, "": 0, "data": 1, "models": 1, "patches": 2, "eval": 3,
          "train": 4, "report": 5}
MAX_FUNCTION_LINES = 80  # Code lines, docstring excluded.
MAX_MODULE_LINES = 400


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
  """"k4p1.train.loop" -> "train"; "k4p1.atomic" and "k4p1" -> ""."""
  parts = module.split(".")
  if len(parts) > 2 or (len(parts) == 2 and (ROOT / parts[1]).is_dir()):
    return parts[1]
  return ""


def _imports(path: pathlib.Path, modules: set) -> set:
  """The k4p1 modules `path` imports (`from k4p1 import data` -> k4p1.data)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [f"{node.module}.{alias.name}" for alias in node.names]
      names = [n if n in modules else node.module for n in names]
    else:
      continue
    found.update(n for n in names if n == "k4p1" or n.startswith("k4p1."))
  return found


def _graph() -> dict:
  paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
  return {name: _imports(path, set(paths)) - {name}
          for name, path in paths.items()}


def test_no_module_imports_a_layer_above_or_beside_it():
  wrong = []
  for module, imported in _graph().items():
    package = _package(module)
    for target in imported:
      other = _package(target)
      if target == "k4p1" or other == package:
        continue
      if LAYERS[other] >= LAYERS[package]:
        wrong.append(f"{module} -> {target}")
  assert not wrong, "Imports against the layers: " + ", ".join(sorted(wrong))


def _top_level_imports(path: pathlib.Path) -> set:
  """The top-level names of every module `path` imports, deferred or not."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(alias.name.split(".")[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      if node.module == "k4p1" or node.module.startswith("k4p1."):
        found.update(f"{node.module}.{alias.name}" for alias in node.names)
      else:
        found.add(node.module.split(".")[0])
  return found


@pytest.mark.parametrize("path", sorted((ROOT / "core").rglob("*.py")), ids=str)
def test_the_core_imports_the_standard_library_and_itself_only(path):
  """No NumPy, TensorFlow or Keras, and nothing of k4p1 but the core."""
  wrong = sorted(name for name in _top_level_imports(path)
                 if not name.startswith("k4p1.core.")
                 and name not in sys.stdlib_module_names)
  assert not wrong, f"{path.name} imports {wrong}"


def test_the_import_graph_has_no_cycle():
  graph = _graph()
  state, cycles = {}, []

  def visit(node, stack):
    state[node] = "open"
    for target in sorted(graph.get(node, ())):
      if state.get(target) == "open":
        cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
      elif target not in state:
        visit(target, stack + [target])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  assert not cycles, "Import cycles: " + "; ".join(cycles)


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=str)
def test_modules_and_functions_are_short(path):
  source = path.read_text()
  assert len(source.splitlines()) <= MAX_MODULE_LINES
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      body = node.body
      has_doc = (isinstance(body[0], ast.Expr) and
                 isinstance(body[0].value, ast.Constant) and
                 isinstance(body[0].value.value, str))
      first = body[1].lineno if has_doc and len(body) > 1 else body[0].lineno
      lines = node.end_lineno - first + 1
      assert lines <= MAX_FUNCTION_LINES, f"{node.name}: {lines} lines"


def test_test_helpers_do_not_ship_in_the_library():
  names = {p.stem for p in ROOT.rglob("*.py")}
  assert not names & {"testing", "ckpt_writers", "calibration"}


def _root_name(node):
  """`x` of an expression `x.a.b` (or `x.a(...).b`); None for other roots."""
  while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
    node = node.func if isinstance(node, ast.Call) else node.value
  return node.id if isinstance(node, ast.Name) else None


def _foreign_names(tree) -> set:
  """Names bound to other libraries' modules or objects at module level.

  `import keras`, `import tensorflow as tf`, `from keras import ops`, and
  aliases of their objects such as `_BN = keras.layers.BatchNormalization`.
  """
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update((a.asname or a.name).split(".")[0] for a in node.names
                   if not a.name.startswith("k4p1"))
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      if not node.module.startswith("k4p1"):
        names.update(a.asname or a.name for a in node.names)
  for node in tree.body:  # Aliases, not new objects: no call in the chain.
    if (isinstance(node, ast.Assign) and _root_name(node.value) in names
        and not any(isinstance(n, ast.Call) for n in ast.walk(node.value))
        and all(isinstance(t, ast.Name) for t in node.targets)):
      names.update(t.id for t in node.targets)
  return names


def _foreign_assignments(tree) -> list:
  """Assignments, deletions and `setattr`s of other libraries' attributes."""
  foreign = _foreign_names(tree)
  wrong = []
  for node in ast.walk(tree):
    targets = []
    if isinstance(node, ast.Assign):
      targets = node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
      targets = [node.target]
    elif isinstance(node, ast.Delete):
      targets = node.targets
    elif isinstance(node, ast.Call) and node.args:
      if (ast.unparse(node.func) in ("setattr", "delattr", "object.__setattr__",
                                     "type.__setattr__", "object.__delattr__")
          and _root_name(node.args[0]) in foreign):
        wrong.append(f"line {node.lineno}: {ast.unparse(node)}")
    for target in targets:
      if isinstance(target, ast.Attribute) and _root_name(target) in foreign:
        wrong.append(f"line {target.lineno}: {ast.unparse(target)} = ...")
  return wrong


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=str)
def test_no_module_assigns_to_another_librarys_attributes(path):
  """No Keras (or other third-party) class or module is changed at run time.

  Flags `keras.layers.BatchNormalization.call = ...` and its aliases,
  augmented assignments and `del` of such attributes, and `setattr` /
  `object.__setattr__` / `type.__setattr__` on them.
  """
  wrong = _foreign_assignments(ast.parse(path.read_text()))
  assert not wrong, f"{path.name} changes another library's objects: {wrong}"


def test_the_attribute_check_catches_the_old_patch():
  source = ("import keras\n_BN = keras.layers.BatchNormalization\n"
            "def f(self, call):\n"
            "  keras.layers.BatchNormalization.call = call\n"
            "  _BN.call = call\n"
            "  setattr(keras.layers.Dense, 'call', call)\n"
            "  self.call = call\n"
            "  object.__setattr__(self, '_layer', call)\n")
  wrong = _foreign_assignments(ast.parse(source))
  assert [w.split(":")[0] for w in wrong] == ["line 4", "line 5", "line 6"]
