"""Run kinds differ only in their plan: the policy, and nothing compares kind names."""

import ast
import pathlib

import pytest

from k4p1 import train
from k4p1.core import choices
from k4p1.core import run_kinds

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Where a kind of run may be named in a branch: the kinds' own table, and the
# property that reads the kind from the config's fields.
ALLOWED = {ROOT / "k4p1" / "core" / "run_kinds.py",
           ROOT / "k4p1" / "core" / "config.py"}


def _kind_literals(node) -> bool:
  """A string constant, or a tuple/list/set of them, naming a kind of run."""
  values = (node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set))
            else [node])
  return any(isinstance(v, ast.Constant) and v.value in choices.EXPERIMENTS
             for v in values)


def _kind_branches(path: pathlib.Path) -> list:
  """`x.experiment == ...`, `kind in ("transfer", ...)`-style comparisons."""
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if not isinstance(node, ast.Compare):
      continue
    operands = [node.left] + node.comparators
    reads_kind = any(
        (isinstance(o, ast.Attribute) and o.attr == "experiment") or
        (isinstance(o, ast.Name) and o.id == "experiment")
        for o in operands)
    names_kind = any(_kind_literals(o) for o in operands) and any(
        isinstance(o, (ast.Name, ast.Attribute)) and
        not (isinstance(o, ast.Attribute) and o.attr == "kind" and
             isinstance(o.value, ast.Name) and o.value.id == "grid")
        for o in operands)
    if reads_kind or names_kind:
      found.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                   f"{ast.get_source_segment(path.read_text(), node)}")
  return found


def test_no_branch_on_the_kind_of_run_outside_the_policy():
  # The report's grid kinds ("transfer" table, "multires" table) are table
  # layouts, not kinds of run: `grid.kind` comparisons are allowed.
  paths = sorted(p for p in (ROOT / "k4p1").rglob("*.py") if p not in ALLOWED)
  found = [line for path in paths for line in _kind_branches(path)]
  assert not found, ("Branches on the kind of run outside k4p1/core/run_kinds."
                     "py; read the plan's policy instead:\n" + "\n".join(found))


def test_the_check_finds_a_branch(tmp_path):
  source = tmp_path / "m.py"
  source.write_text("def f(plan, kind):\n"
                    "  a = plan.experiment == 'transfer'\n"
                    "  b = kind in ('pretrain', 'multires')\n"
                    "  c = grid.kind == 'multires'\n")
  global ROOT  # pylint: disable=global-statement
  root, ROOT = ROOT, tmp_path
  try:
    assert [line.split(": ", 1)[0] for line in _kind_branches(source)] == [
        "m.py:2", "m.py:3"]
  finally:
    ROOT = root


def test_one_policy_per_kind_of_run():
  assert tuple(run_kinds.POLICIES) == choices.EXPERIMENTS
  for kind, policy in run_kinds.POLICIES.items():
    assert policy.kind == kind
    assert policy.saves in run_kinds.SAVES
    assert policy.param_counts in run_kinds.PARAM_COUNTS
    assert policy.table in run_kinds.TABLES
    assert policy.tflite in (None, "task", "tasks")
  with pytest.raises(ValueError, match=r"'distill'.*transfer, pretrain"):
    run_kinds.policy("distill")


def test_report_reads_unknown_kinds_as_per_task_tables():
  assert run_kinds.table("distill") == "tasks"
  assert run_kinds.title("distill") == ""
  assert run_kinds.table("multires") == "resolutions"


@pytest.mark.parametrize("fields, kind", [
    (dict(dataset="mnist5k:0-4", pretrain=True, patch="full"), "pretrain"),
    (dict(dataset="mnist5k", resolutions=(32, 48), patch="scale_bias"),
     "multires"),
])
def test_export_tflite_refused_for_kinds_without_a_served_model(
    tmp_path, fields, kind):
  config = train.RunConfig(workdir=str(tmp_path), weights=None,
                           export_tflite=True, **fields)
  with pytest.raises(ValueError, match=rf"not supported by {kind} runs.*"
                     r"transfer, multitask, sequential"):
    train.resolve(config)


def test_plan_carries_the_policy(tmp_path):
  plan = train.resolve(train.RunConfig(
      workdir=str(tmp_path), dataset="mnist5k", resolutions=(32, 48),
      patch="scale_bias+logits", weights=None))
  assert plan.policy is run_kinds.POLICIES["multires"]
  assert "logits" not in plan.spec.kinds  # The shared head is not patched.
  assert plan.config.task_names == ("mnist5k@32", "mnist5k@48")
