"""Groups runs into the paper's tables as numeric grids (rows x columns -> cells).

A `Grid` is the numbers of one table before formatting; `tables.py` renders
grids as Markdown/CSV and `plots.py` draws them. Rows, cells and settings
follow `cells.py` (see BUILD_NOTES.md). Table rules:

- Transfer tables never average over learning rates: each table has a main
  learning rate (the one most of its runs used; ties go to the one nearest the
  paper's 0.045), and a cell holds only its runs at that rate -- or, if it has
  none, at its rate nearest to it (the cell then says which). Every transfer
  column with runs at two or more learning rates also gets a sweep grid.
- Selected on validation: a transfer cell whose runs recorded validation
  accuracies (`validation_fraction`) holds its runs at the rate with the best
  mean validation accuracy instead (`cells.best_validation_lr`); sweep cells
  carry their validation accuracies too.
- Transfer runs whose weights start with "ssd_tf1:" / "ssd_tf2:" form the
  separate SSD -> ImageNet table (paper claim 1).
- A transfer dataset with TAPS runs also gets a TAPS grid (`taps.py`).
"""

import collections
from typing import Sequence

from k4p1.core import run_kinds
from k4p1.report import cells as cells_lib
from k4p1.report import collect
from k4p1.report import paper as paper_lib
from k4p1.report import taps as taps_lib
from k4p1.report.cells import Cell
from k4p1.report.cells import dataset_sort_key
from k4p1.report.cells import format_setting
from k4p1.report.cells import Grid
from k4p1.report.cells import main_learning_rate
from k4p1.report.cells import PAPER_LEARNING_RATE
from k4p1.report.cells import PATCH_ORDER
from k4p1.report.cells import row_key
from k4p1.report.cells import RowKey
from k4p1.report.cells import SETTING_KEYS
from k4p1.report.cells import slug
from k4p1.report.cells import split_settings

# The public names; those from cells.py are re-exported (they lived here before).
__all__ = ["GRID_KIND_ORDER", "PAPER_LEARNING_RATE", "PATCH_ORDER", "SETTING_KEYS",
           "SSD_WEIGHT_PREFIXES", "Cell", "Grid", "RowKey", "build_grids",
           "build_multires_grids", "build_task_grids", "build_transfer_grids",
           "dataset_sort_key", "format_setting", "main_learning_rate", "parse_resolution_task",
           "row_key", "slug", "split_settings"]

GRID_KIND_ORDER = ("transfer", "lr_sweep", "taps", "ssd_to_imagenet", "multitask",
                   "sequential", "multires")
SSD_WEIGHT_PREFIXES = taps_lib.SSD_WEIGHT_PREFIXES


def _transfer_grids(kind: str, model: str, runs: list[collect.RunResult]) -> list[Grid]:
  """The transfer table of one (kind, model) and its learning-rate sweeps."""
  varying, shared = split_settings(runs, SETTING_KEYS)
  sizes = collections.defaultdict(set)
  for run in runs:
    for task in run.tasks:
      sizes[task].add(run.image_size)
  entries = []
  for run in runs:
    for task, result in run.tasks.items():
      column = (task, run.image_size if len(sizes[task]) > 1 else None)
      entries.append((row_key(run, varying), column, run, result.accuracy))
  columns = sorted({column for _, column, _, _ in entries},
                   key=lambda c: (dataset_sort_key(c[0]), c[1] or 0))
  labels = cells_lib.column_labels(columns)
  main_lr = main_learning_rate([run.learning_rate for run in runs])
  cells = cells_lib.make_cells(
      entries, pick_lr=lambda lrs: cells_lib.nearest_lr(set(lrs), main_lr),
      paper_lookup=lambda row, column: paper_lib.paper_transfer_accuracy(
          model, column[0], row.kinds), validation=cells_lib.validation_accuracy)
  if kind == "ssd_to_imagenet":
    title = f"SSD feature extractor -> ImageNet classifier ({model}; paper claim 1)"
  else:
    title = f"Transfer learning: {model}"
  grids = [Grid(kind, f"{kind}_{model}", title, model, cells_lib.ordered_rows(cells), columns,
                labels, cells, cells_lib.caption_settings(model, runs, shared),
                main_learning_rate=main_lr)]
  for column in columns:
    column_entries = [e for e in entries if e[1] == column]
    lrs = {e[2].learning_rate for e in column_entries if e[2].learning_rate is not None}
    if len(lrs) < 2:
      continue
    # Row labels name only the settings that differ within this sweep.
    sweep_runs = list({e[2].workdir: e[2] for e in column_entries}.values())
    sweep_varying, sweep_shared = split_settings(sweep_runs, SETTING_KEYS)
    sweep_cells = cells_lib.make_cells(
        ((row_key(run, sweep_varying), run.learning_rate, run, acc)
         for _, _, run, acc in column_entries if run.learning_rate is not None),
        validation=lambda run, _, task=column[0]: cells_lib.validation_accuracy(run, (task,)))
    prefix = "ssd_" if kind == "ssd_to_imagenet" else ""
    grids.append(Grid(
        "lr_sweep", slug(f"{prefix}lr_sweep_{model}_{labels[column]}"),
        f"Learning-rate sweep: {model} on {labels[column]}"
        + (" (SSD weights)" if prefix else ""),
        model, cells_lib.ordered_rows(sweep_cells), sorted(lrs), {lr: f"lr={lr:g}" for lr in lrs},
        sweep_cells, cells_lib.caption_settings(model, sweep_runs, sweep_shared),
        dataset=labels[column]))
  return grids


def build_transfer_grids(runs: Sequence[collect.RunResult]) -> list[Grid]:
  """Transfer, SSD -> ImageNet and learning-rate-sweep grids, one set per model."""
  groups = collections.defaultdict(list)
  for run in runs:
    if run_kinds.table(run.experiment) == "transfer":
      ssd = (run.weights or "").startswith(SSD_WEIGHT_PREFIXES)
      groups[("ssd_to_imagenet" if ssd else "transfer", run.model)].append(run)
  grids = []
  for (kind, model), group in sorted(groups.items()):
    grids.extend(_transfer_grids(kind, model, group))
  return grids


def build_task_grids(runs: Sequence[collect.RunResult]) -> list[Grid]:
  """Multi-task, sequential and other per-task tables: one per (experiment, model, task set).

  Rows are patch kinds (and differing settings, learning rate included: these
  tables never average over learning rates); columns are the tasks.
  """
  groups = collections.defaultdict(list)
  for run in runs:
    if run_kinds.table(run.experiment) == "tasks":
      groups[(run.experiment, run.model, tuple(sorted(run.tasks)))].append(run)
  grids = []
  for (experiment, model, task_set), group in sorted(groups.items()):
    varying, shared = split_settings(group, SETTING_KEYS + ("learning_rate", "image_size"))
    cells = cells_lib.make_cells((row_key(run, varying), task, run, result.accuracy)
                                 for run in group for task, result in run.tasks.items())
    columns = list(dict.fromkeys(task for run in group for task in run.tasks))
    heading = run_kinds.title(experiment)
    if heading:
      kind, title = experiment, f"{heading}: {model}"
    else:
      kind, title = f"other:{experiment}", f"Experiment {experiment!r}: {model}"
    title += f" ({len(columns)} tasks: {', '.join(columns)})"
    table_id = slug(f"{experiment}_{model}_{'_'.join(task_set)}")
    grids.append(Grid(kind, table_id, title, model, cells_lib.ordered_rows(cells), columns,
                      {c: c for c in columns}, cells, {"model": model, **shared}))
  return grids


def parse_resolution_task(task: str, default_size: int | None) -> tuple[str, int | None]:
  """"mnist5k@96" -> ("mnist5k", 96); a name without "@" gets the run's image size."""
  name, sep, size = task.rpartition("@")
  if sep and size.isdigit():
    return name, int(size)
  return task, default_size


def build_multires_grids(runs: Sequence[collect.RunResult]) -> list[Grid]:
  """Multi-resolution tables: one per (model, dataset); columns are resolutions."""
  groups = collections.defaultdict(list)
  for run in runs:
    if run_kinds.table(run.experiment) == "resolutions":
      for task, result in run.tasks.items():
        dataset, size = parse_resolution_task(task, run.image_size)
        groups[(run.model, dataset)].append((run, size, result.accuracy))
  grids = []
  for (model, dataset), members in sorted(groups.items()):
    group = list({run.workdir: run for run, _, _ in members}.values())
    varying, shared = split_settings(group, SETTING_KEYS + ("learning_rate",))
    cells = cells_lib.make_cells((row_key(run, varying), size, run, acc)
                                 for run, size, acc in members)
    columns = sorted({size for _, size, _ in members}, key=lambda s: (s is None, s or 0))
    labels = {s: f"{s}px" if s is not None else "unknown size" for s in columns}
    grids.append(Grid("multires", slug(f"multires_{model}_{dataset}"),
                      f"Multi-resolution: {model} on {dataset}", model,
                      cells_lib.ordered_rows(cells), columns, labels, cells,
                      {"model": model, **shared}, dataset=dataset))
  return grids


def build_grids(runs: Sequence[collect.RunResult]) -> list[Grid]:
  """Every table's grid, table ids made unique (a clash gets "_2", "_3", ...)."""
  grids = (build_transfer_grids(runs) + taps_lib.build_taps_grids(runs) + build_task_grids(runs)
           + build_multires_grids(runs))
  # Stable sort: within a kind, the builders' (model, dataset) order stays.
  grids.sort(key=lambda g: GRID_KIND_ORDER.index(g.kind) if g.kind in GRID_KIND_ORDER
             else len(GRID_KIND_ORDER))
  seen = collections.Counter()
  for grid in grids:
    seen[grid.table_id] += 1
    if seen[grid.table_id] > 1:
      grid.table_id = f"{grid.table_id}_{seen[grid.table_id]}"
  return grids
