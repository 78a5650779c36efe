"""Groups runs into the paper's tables as numeric grids (rows x columns -> cells).

A `Grid` is the numbers of one table before formatting; `tables.py` renders
grids as Markdown/CSV and `plots.py` draws them. Rules (see BUILD_NOTES.md):

- Rows are patch kinds in the paper's order (`PATCH_ORDER`, unknown kinds after,
  by name). Runs that differ in a setting of `SETTING_KEYS` (e.g. `bn_stats`)
  get separate rows labelled with it; settings shared by every run of a table
  go in its caption. Runs that differ in nothing else (e.g. seeds) are one cell:
  mean, sample std, count.
- Transfer tables never average over learning rates: each table has a main
  learning rate (the one most of its runs used; ties go to the one nearest the
  paper's 0.045), and a cell holds only its runs at that rate -- or, if it has
  none, at its rate nearest to it (the cell then says which). Every transfer
  column with runs at two or more learning rates also gets a sweep grid.
- Transfer runs whose weights start with "ssd_tf1:" / "ssd_tf2:" form the
  separate SSD -> ImageNet table (paper claim 1).
"""

import collections
import dataclasses
import json
import math
import re
import statistics
from typing import Any, Hashable, Iterable, Sequence

from k4p1.report import collect
from k4p1.report import paper as paper_lib

PATCH_ORDER = tuple(collect.patch_kinds(spec) for spec in (
    "logits", "logits+bias", "logits+scale_bias", "logits+depthwise",
    "logits+scale_bias+depthwise", "full"))

# Config keys whose differences change a result; runs differing in one of them
# never share a cell. Seeds and paths are deliberately absent (averaged / ignored).
SETTING_KEYS = ("weights", "bn_stats", "add_missing_scales", "alpha", "shared",
                "task_sampling", "optimizer", "batch_size", "epochs", "train_steps",
                "label_smoothing", "weight_decay")
# The paper's dataset order (PAPER.md, "Experimental setup"), then the offline ones.
DATASET_ORDER = ("imagenet2012", "cifar10", "cifar100", "cars196", "fgvc_aircraft",
                 "oxford_flowers102", "places365_small", "mnist5k", "digits")
GRID_KIND_ORDER = ("transfer", "lr_sweep", "ssd_to_imagenet", "multitask", "sequential",
                   "multires")
PAPER_LEARNING_RATE = 0.045
SSD_WEIGHT_PREFIXES = ("ssd_tf1:", "ssd_tf2:")


@dataclasses.dataclass(frozen=True)
class RowKey:
  """A table row: patch kinds plus the settings that set it apart."""
  kinds: frozenset[str]
  settings: tuple[tuple[str, str], ...] = ()

  @property
  def patch(self) -> str:
    return collect.canonical_patch(self.kinds)

  @property
  def label(self) -> str:
    patch = self.patch
    if not self.settings:
      return patch
    return f"{patch} ({', '.join(f'{k}={v}' for k, v in self.settings)})"

  def sort_key(self):
    order = PATCH_ORDER.index(self.kinds) if self.kinds in PATCH_ORDER else len(PATCH_ORDER)
    return (order, self.patch, self.settings)


@dataclasses.dataclass(frozen=True)
class Cell:
  """Runs averaged into one table cell; `accuracies` are fractions, one per run."""
  accuracies: tuple[float, ...]
  runs: tuple[collect.RunResult, ...]
  learning_rate: float | None = None
  paper: paper_lib.PaperNumber | None = None

  @property
  def n(self) -> int:
    return len(self.accuracies)

  @property
  def mean_pct(self) -> float:
    return 100.0 * math.fsum(self.accuracies) / self.n

  @property
  def std_pct(self) -> float | None:
    """Sample standard deviation in percent; None for a single run."""
    return 100.0 * statistics.stdev(self.accuracies) if self.n > 1 else None

  @property
  def trained_params(self) -> tuple[int, ...]:
    return tuple(sorted({run.params["patch_trainable"] for run in self.runs}))

  @property
  def pct_of_model(self) -> tuple[float, ...]:
    """patch_trainable / params.total in percent, distinct values ascending."""
    return tuple(sorted({100.0 * run.params["patch_trainable"] / run.params["total"]
                         for run in self.runs}))


@dataclasses.dataclass
class Grid:
  """The numbers of one table.

  Attributes:
    kind: "transfer", "ssd_to_imagenet", "lr_sweep", "multitask", "multires",
      "sequential", or "other:<experiment>".
    table_id: unique file-name stem ("transfer_mobilenet_v2").
    title: the table's heading.
    model: architecture name.
    rows: row keys, in display order.
    columns: column keys, in display order.
    column_labels: column key -> header text.
    cells: (row, column) -> Cell; absent where no run exists.
    settings: setting -> value shared by every run in the table.
    main_learning_rate: transfer tables: the learning rate cells are taken at.
    dataset: lr_sweep / multires tables: the dataset they are about.
  """
  kind: str
  table_id: str
  title: str
  model: str
  rows: list[RowKey]
  columns: list[Hashable]
  column_labels: dict[Hashable, str]
  cells: dict[tuple[RowKey, Hashable], Cell]
  settings: dict[str, str]
  main_learning_rate: float | None = None
  dataset: str | None = None

  def runs(self) -> list[collect.RunResult]:
    """Every run whose numbers appear in the table, sorted by workdir."""
    by_workdir = {run.workdir: run for cell in self.cells.values() for run in cell.runs}
    return [by_workdir[w] for w in sorted(by_workdir)]

  def row_runs(self, row: RowKey) -> list[collect.RunResult]:
    by_workdir = {run.workdir: run for (r, _), cell in self.cells.items() if r == row
                  for run in cell.runs}
    return [by_workdir[w] for w in sorted(by_workdir)]


def format_setting(value: Any) -> str:
  """A config value as shown in labels and captions ("imagenet", "true", "0.045")."""
  return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _setting(run: collect.RunResult, key: str) -> Any:
  if key == "image_size":
    return run.image_size
  if key == "learning_rate":
    return run.learning_rate
  return run.config.get(key)


def split_settings(runs: Sequence[collect.RunResult], keys: Iterable[str]):
  """Splits `keys` into those shared by every run and those that differ.

  Returns:
    (varying, shared): varying is a tuple of keys whose values differ between
    runs; shared maps each other key present in the runs to its formatted value.
  """
  varying, shared = [], {}
  for key in keys:
    values = {format_setting(_setting(run, key)) for run in runs}
    if len(values) > 1:
      varying.append(key)
    elif values != {"null"}:
      shared[key] = values.pop()
  return tuple(varying), shared


def row_key(run: collect.RunResult, varying: Sequence[str]) -> RowKey:
  settings = tuple((key, format_setting(_setting(run, key))) for key in varying)
  return RowKey(run.patch_kinds, settings)


def _log_distance(lr: float | None, target: float | None) -> float:
  if lr == target:
    return 0.0
  if lr is None or target is None or lr <= 0 or target <= 0:
    return math.inf
  return abs(math.log(lr / target))


def _nearest_lr(candidates: Iterable[float | None], target: float | None):
  """The candidate nearest `target` on a log scale; ties go to the larger one."""
  return min(candidates, key=lambda lr: (_log_distance(lr, target),
                                         -(lr if lr is not None else -math.inf)))


def main_learning_rate(learning_rates: Sequence[float | None]) -> float | None:
  """The learning rate most runs used; ties go to the one nearest the paper's."""
  counts = collections.Counter(learning_rates)
  most = max(counts.values())
  return _nearest_lr([lr for lr, c in counts.items() if c == most], PAPER_LEARNING_RATE)


def dataset_sort_key(name: str):
  """Datasets in the paper's order (PAPER.md), others after by name; subsets beside their set."""
  base = name.split(":")[0]
  order = DATASET_ORDER.index(base) if base in DATASET_ORDER else len(DATASET_ORDER)
  return (order, base, name)


def slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:100]


def _make_cells(entries, pick_lr=None, paper_lookup=None):
  """Groups (row, column, run, accuracy) entries into cells.

  Args:
    entries: iterable of (row, column, run, accuracy).
    pick_lr: if given, f(learning rates in the cell) -> the one to keep.
    paper_lookup: if given, f(row, column) -> PaperNumber | None.

  Returns:
    {(row, column): Cell}.
  """
  grouped = collections.defaultdict(list)
  for row, column, run, accuracy in entries:
    grouped[(row, column)].append((run, accuracy))
  cells = {}
  for key, members in grouped.items():
    lr = None
    if pick_lr is not None:
      lr = pick_lr([run.learning_rate for run, _ in members])
      members = [(run, acc) for run, acc in members if run.learning_rate == lr]
    else:
      lrs = {run.learning_rate for run, _ in members}
      lr = lrs.pop() if len(lrs) == 1 else None
    members.sort(key=lambda m: m[0].workdir)
    cells[key] = Cell(tuple(acc for _, acc in members), tuple(run for run, _ in members), lr,
                      paper_lookup(*key) if paper_lookup else None)
  return cells


def _ordered_rows(cells) -> list[RowKey]:
  return sorted({row for row, _ in cells}, key=RowKey.sort_key)


def _caption_settings(model, runs, shared) -> dict[str, str]:
  """Model, the image size(s) of the runs, then their shared settings."""
  sizes = sorted({run.image_size for run in runs if run.image_size is not None})
  size = {"image_size": ", ".join(map(str, sizes))} if sizes else {}
  return {"model": model, **size, **shared}


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
  labels = {c: c[0] if c[1] is None else f"{c[0]} @{c[1]}px" for c in columns}
  main_lr = main_learning_rate([run.learning_rate for run in runs])
  cells = _make_cells(
      entries, pick_lr=lambda lrs: _nearest_lr(set(lrs), main_lr),
      paper_lookup=lambda row, column: paper_lib.paper_transfer_accuracy(
          model, column[0], row.kinds))
  if kind == "ssd_to_imagenet":
    title = f"SSD feature extractor -> ImageNet classifier ({model}; paper claim 1)"
  else:
    title = f"Transfer learning: {model}"
  grids = [Grid(kind, f"{kind}_{model}", title, model, _ordered_rows(cells), columns, labels,
                cells, _caption_settings(model, runs, shared), main_learning_rate=main_lr)]
  for column in columns:
    column_entries = [e for e in entries if e[1] == column]
    lrs = {e[2].learning_rate for e in column_entries if e[2].learning_rate is not None}
    if len(lrs) < 2:
      continue
    # Row labels name only the settings that differ within this sweep.
    sweep_runs = list({e[2].workdir: e[2] for e in column_entries}.values())
    sweep_varying, sweep_shared = split_settings(sweep_runs, SETTING_KEYS)
    sweep_cells = _make_cells((row_key(run, sweep_varying), run.learning_rate, run, acc)
                              for _, _, run, acc in column_entries
                              if run.learning_rate is not None)
    prefix = "ssd_" if kind == "ssd_to_imagenet" else ""
    grids.append(Grid(
        "lr_sweep", slug(f"{prefix}lr_sweep_{model}_{labels[column]}"),
        f"Learning-rate sweep: {model} on {labels[column]}"
        + (" (SSD weights)" if prefix else ""),
        model, _ordered_rows(sweep_cells), sorted(lrs), {lr: f"lr={lr:g}" for lr in lrs},
        sweep_cells, _caption_settings(model, sweep_runs, sweep_shared),
        dataset=labels[column]))
  return grids


def build_transfer_grids(runs: Sequence[collect.RunResult]) -> list[Grid]:
  """Transfer, SSD -> ImageNet and learning-rate-sweep grids, one set per model."""
  groups = collections.defaultdict(list)
  for run in runs:
    if run.experiment == "transfer":
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
    if run.experiment not in ("transfer", "multires"):
      groups[(run.experiment, run.model, tuple(sorted(run.tasks)))].append(run)
  grids = []
  for (experiment, model, task_set), group in sorted(groups.items()):
    varying, shared = split_settings(group, SETTING_KEYS + ("learning_rate", "image_size"))
    cells = _make_cells((row_key(run, varying), task, run, result.accuracy)
                        for run in group for task, result in run.tasks.items())
    columns = list(dict.fromkeys(task for run in group for task in run.tasks))
    if experiment in ("multitask", "sequential"):
      kind = experiment
      title = f"{'Multi-task' if kind == 'multitask' else 'Sequential'} learning: {model}"
    else:
      kind, title = f"other:{experiment}", f"Experiment {experiment!r}: {model}"
    title += f" ({len(columns)} tasks: {', '.join(columns)})"
    table_id = slug(f"{experiment}_{model}_{'_'.join(task_set)}")
    grids.append(Grid(kind, table_id, title, model, _ordered_rows(cells), columns,
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
    if run.experiment == "multires":
      for task, result in run.tasks.items():
        dataset, size = parse_resolution_task(task, run.image_size)
        groups[(run.model, dataset)].append((run, size, result.accuracy))
  grids = []
  for (model, dataset), members in sorted(groups.items()):
    group = list({run.workdir: run for run, _, _ in members}.values())
    varying, shared = split_settings(group, SETTING_KEYS + ("learning_rate",))
    cells = _make_cells((row_key(run, varying), size, run, acc) for run, size, acc in members)
    columns = sorted({size for _, size, _ in members}, key=lambda s: (s is None, s or 0))
    labels = {s: f"{s}px" if s is not None else "unknown size" for s in columns}
    grids.append(Grid("multires", slug(f"multires_{model}_{dataset}"),
                      f"Multi-resolution: {model} on {dataset}", model, _ordered_rows(cells),
                      columns, labels, cells, {"model": model, **shared}, dataset=dataset))
  return grids


def build_grids(runs: Sequence[collect.RunResult]) -> list[Grid]:
  """Every table's grid, table ids made unique (a clash gets "_2", "_3", ...)."""
  grids = build_transfer_grids(runs) + build_task_grids(runs) + build_multires_grids(runs)
  # Stable sort: within a kind, the builders' (model, dataset) order stays.
  grids.sort(key=lambda g: GRID_KIND_ORDER.index(g.kind) if g.kind in GRID_KIND_ORDER
             else len(GRID_KIND_ORDER))
  seen = collections.Counter()
  for grid in grids:
    seen[grid.table_id] += 1
    if seen[grid.table_id] > 1:
      grid.table_id = f"{grid.table_id}_{seen[grid.table_id]}"
  return grids
