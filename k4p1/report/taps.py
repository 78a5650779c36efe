"""The parameter-budget grid: accuracy vs task-specific parameters, TAPS and LoRA vs fixed patches.

TAPS (Wallingford et al., CVPR 2022) gives every convolution a per-task residual
that is kept only where a learned gate opens; its sparsity penalty
(`taps_lambda`) closes most gates. How many parameters a TAPS task keeps is
therefore a result, not a setting. LoRA patches keep rank-r factors of every
convolution (`lora_rank`). This grid puts TAPS rows (one per lambda) and LoRA
rows (one per rank) beside the fixed patch kinds of the same model and
dataset, each with what its patch file stores (`params.patch_stored`), so they
compare like for like, and marks the rows on the accuracy-parameters frontier.

One grid per (model, dataset, image size) of transfer runs with at least one
TAPS or LoRA run (table id `taps_...`, or `lora_...` without TAPS); rows are
(patch, differing settings, e.g. taps_lambda, lora_rank), one column (the
dataset). Like the transfer tables, a grid never averages over learning rates:
each row is taken at the rate selected on validation accuracy where its runs
recorded one, else at the grid's main learning rate, or its nearest.
"""

import collections
import dataclasses
import math
import statistics
from typing import Sequence

from k4p1.core import run_kinds
from k4p1.report import cells as cells_lib
from k4p1.report import collect

SSD_WEIGHT_PREFIXES = ("ssd_tf1:", "ssd_tf2:")
TAPS_KIND = "taps"
LORA_KIND = "lora"
# Patch kinds whose runs give a dataset this grid.
BUDGET_KINDS = (TAPS_KIND, LORA_KIND)
_KIND_NAMES = {TAPS_KIND: "TAPS", LORA_KIND: "LoRA"}
# Layer classes shown first, in this order; any other class follows by name.
LAYER_CLASS_ORDER = ("Conv2D", "DepthwiseConv2D")


def _mean(values) -> float:
  return math.fsum(values) / len(values)


@dataclasses.dataclass(frozen=True)
class Fraction:
  """Open layers of some runs: mean open, distinct gated counts (ascending), mean gated."""
  open_mean: float
  gated: tuple[int, ...]
  gated_mean: float

  @property
  def pct(self) -> float:
    """Mean open / mean gated, in percent (0 without gated layers)."""
    return 100.0 * self.open_mean / self.gated_mean if self.gated_mean else 0.0


def _fraction(counts) -> Fraction:
  """Fraction of (gated, open) pairs, one per run."""
  return Fraction(_mean([o for _, o in counts]), tuple(sorted({g for g, _ in counts})),
                  _mean([g for g, _ in counts]))


@dataclasses.dataclass(frozen=True)
class CellStats:
  """A TAPS-table cell's parameter and gate numbers, over its runs.

  Attributes:
    stored: each run's `params.patch_stored` (workdir order); empty if any
      run does not record it.
    stored_pct: each run's patch_stored / params.total, in percent.
    trained: distinct `params.patch_trainable`, ascending.
    gates: the open layers over all gated ones; None unless every run is a
      TAPS run with a gate summary for the task.
    by_class: layer class -> its open layers (classes in display order).
  """
  stored: tuple[int, ...]
  stored_pct: tuple[float, ...]
  trained: tuple[int, ...]
  gates: Fraction | None
  by_class: dict[str, Fraction]

  @property
  def stored_mean(self) -> float | None:
    return _mean(self.stored) if self.stored else None

  @property
  def stored_std(self) -> float | None:
    return statistics.stdev(self.stored) if len(self.stored) > 1 else None

  @property
  def stored_pct_mean(self) -> float | None:
    return _mean(self.stored_pct) if self.stored_pct else None


def layer_class_order(name: str):
  order = (LAYER_CLASS_ORDER.index(name) if name in LAYER_CLASS_ORDER
           else len(LAYER_CLASS_ORDER))
  return (order, name)


def cell_stats(cell: cells_lib.Cell, task: str) -> CellStats:
  """The stored parameters and open layers of `cell`'s runs on `task`."""
  runs = cell.runs
  recorded = all("patch_stored" in run.params for run in runs)
  stored = tuple(run.params["patch_stored"] for run in runs) if recorded else ()
  pct = (tuple(100.0 * run.params["patch_stored"] / run.params["total"] for run in runs)
         if recorded else ())
  trained = tuple(sorted({run.params["patch_trainable"] for run in runs}))
  summaries = [run.tasks[task].taps for run in runs]
  if not summaries or any(s is None for s in summaries):
    return CellStats(stored, pct, trained, None, {})
  gates = _fraction([(s.gated_layers, s.open_layers) for s in summaries])
  names = sorted({c for s in summaries for c in s.by_layer_class}, key=layer_class_order)
  by_class = {name: _fraction([s.by_layer_class.get(name, (0, 0)) for s in summaries])
              for name in names}
  return CellStats(stored, pct, trained, gates, by_class)


def grid_layer_classes(grid: cells_lib.Grid) -> list[str]:
  """Every layer class of the grid's TAPS runs, in display order."""
  names = {name for (_, column), cell in grid.cells.items() for run in cell.runs
           if run.tasks[column[0]].taps is not None
           for name in run.tasks[column[0]].taps.by_layer_class}
  return sorted(names, key=layer_class_order)


def _grid(group_key, runs: list[collect.RunResult], label: str) -> cells_lib.Grid:
  """The grid of one (ssd, model, task, image size or None) group of runs."""
  ssd, model, task, size = group_key
  varying, shared = cells_lib.split_settings(runs, cells_lib.SETTING_KEYS)
  main_lr = cells_lib.main_learning_rate([run.learning_rate for run in runs])
  column = (task, size)
  cells = cells_lib.make_cells(
      ((cells_lib.row_key(run, varying), column, run, run.tasks[task].accuracy)
       for run in runs),
      pick_lr=lambda lrs: cells_lib.nearest_lr(set(lrs), main_lr),
      validation=cells_lib.validation_accuracy)
  prefix = "ssd_" if ssd else ""
  present = [kind for kind in BUDGET_KINDS if any(kind in run.patch_kinds for run in runs)]
  names = " and ".join(_KIND_NAMES[kind] for kind in present)
  return cells_lib.Grid(
      "taps", cells_lib.slug(f"{prefix}{present[0]}_{model}_{label}"),
      f"Accuracy vs task-specific parameters: {names} beside the fixed patches ({model} on "
      f"{label}" + (", SSD weights)" if ssd else ")"),
      model, cells_lib.ordered_rows(cells), [column], {column: label}, cells,
      cells_lib.caption_settings(model, runs, shared), main_learning_rate=main_lr,
      dataset=label)


def frontier(grid: cells_lib.Grid) -> set[cells_lib.RowKey]:
  """The rows no other row beats: none is as accurate with as few stored parameters.

  A row is off the frontier when another row's mean accuracy is at least its
  own with at most its mean stored parameters, one of the two strictly
  (rows without recorded stored parameters are never on it).
  """
  ((task, _),) = grid.columns
  points = {}
  for row in grid.rows:
    cell = grid.cells[(row, grid.columns[0])]
    stored = cell_stats(cell, task).stored_mean
    if stored is not None:
      points[row] = (stored, cell.mean_pct)
  return {row for row, (n, acc) in points.items()
          if not any(m <= n and a >= acc and (m, a) != (n, acc)
                     for other, (m, a) in points.items() if other != row)}


def build_taps_grids(runs: Sequence[collect.RunResult]) -> list[cells_lib.Grid]:
  """One grid per (model, dataset, image size) of transfer runs with a TAPS or LoRA run.

  Returns:
    The grids, by (SSD weights or not, model, dataset in the paper's order,
    image size); [] when no transfer run has a TAPS or LoRA patch.
  """
  groups = collections.defaultdict(list)
  sizes = collections.defaultdict(set)
  for run in runs:
    if run_kinds.table(run.experiment) != "transfer":
      continue
    ssd = (run.weights or "").startswith(SSD_WEIGHT_PREFIXES)
    for task in run.tasks:
      groups[(ssd, run.model, task, run.image_size)].append(run)
      sizes[(ssd, run.model, task)].add(run.image_size)
  grids = []
  for key in sorted(groups, key=lambda k: (k[0], k[1], cells_lib.dataset_sort_key(k[2]),
                                           k[3] or 0)):
    members = groups[key]
    if not any(kind in run.patch_kinds for run in members for kind in BUDGET_KINDS):
      continue
    if len(sizes[key[:3]]) < 2:
      key = key[:3] + (None,)
    (label,) = cells_lib.column_labels([key[2:]]).values()
    grids.append(_grid(key, members, label))
  return grids
