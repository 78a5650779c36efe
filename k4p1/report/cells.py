"""The building blocks of every table: row keys, cells of averaged runs, grids.

`grids.py` (and `taps.py`) group runs into `Grid`s with these; `tables.py`
renders them and `plots.py` draws them. Rules (see BUILD_NOTES.md):

- Rows are patch kinds in the paper's order (`PATCH_ORDER`, unknown kinds after,
  by name). Runs that differ in a setting of `SETTING_KEYS` (e.g. `bn_stats`)
  get separate rows labelled with it; settings shared by every run of a table
  go in its caption. Runs that differ in nothing else (e.g. seeds) are one cell:
  mean, sample std, count.
- A setting of one patch kind (`KIND_SETTINGS`, e.g. TAPS's `taps_lambda`)
  applies only to runs with that kind: only they are compared on it, and only
  their row labels name it.
- Selected on validation: a cell whose runs recorded validation accuracies
  (`validation_fraction`) takes the learning rate with the best mean
  validation accuracy over its runs at each rate (`best_validation_lr`), and
  holds the test accuracies of its runs at that rate.
"""

import collections
import dataclasses
import json
import math
import re
import statistics
from typing import Any, Hashable, Iterable, Sequence

from k4p1.core import defaults
from k4p1.report import collect
from k4p1.report import paper as paper_lib

PATCH_ORDER = tuple(collect.patch_kinds(spec) for spec in (
    "logits", "logits+stats", "logits+bias", "logits+scale_bias", "logits+depthwise",
    "logits+scale_bias+depthwise", "logits+taps", "logits+scale_bias+taps", "logits+lora",
    "logits+scale_bias+lora", "logits+scale_bias+depthwise+lora", "logits+taps+lora",
    "logits+scale_bias+taps+lora", "full"))

# Settings of one patch kind (k4p1.core.RunConfig field -> kind), with the
# value a results.json that does not record them ran with (TAPS's defaults).
KIND_SETTINGS = {"taps_lambda": "taps", "taps_threshold": "taps", "taps_warmup_epochs": "taps",
                 "lora_rank": "lora", "lora_alpha": "lora"}
KIND_SETTING_DEFAULTS = {"taps_lambda": defaults.TAPS_LAMBDA,
                         "taps_threshold": defaults.TAPS_THRESHOLD,
                         "lora_rank": defaults.LORA_RANK}
# A kind's setting whose unset value is another setting's (LoRA's alpha: the
# rank). Unset, it reads as that setting's name, so rows of several ranks and
# the default alpha share it ("lora_alpha=lora_rank") instead of each row
# repeating its rank.
KIND_SETTING_FALLBACKS = {"lora_alpha": "lora_rank"}
# Settings a results.json written before they existed ran with: trained BN
# layers started from the base's values ("copy") before bn_init existed.
RECORD_DEFAULTS = {"bn_init": "copy"}
# Config keys whose differences change a result; runs differing in one of them
# never share a cell. Seeds and paths are deliberately absent (averaged / ignored).
SETTING_KEYS = ("weights", "bn_stats", "bn_init", "add_missing_scales", "alpha", "shared",
                "task_sampling", "optimizer", "batch_size", "epochs", "train_steps",
                "label_smoothing", "weight_decay", "validation_fraction") + tuple(KIND_SETTINGS)
# The paper's dataset order (PAPER.md, "Experimental setup"), then the offline ones.
DATASET_ORDER = ("imagenet2012", "cifar10", "cifar100", "cars196", "fgvc_aircraft",
                 "oxford_flowers102", "places365_small", "mnist5k", "mnistm5k",
                 "digits")
PAPER_LEARNING_RATE = defaults.PAPER_LEARNING_RATE


def _value_order(value: str):
  """Numbers by value ("0.1" < "1" < "10"), before other strings."""
  try:
    return (0, float(value), "")
  except ValueError:
    return (1, 0.0, value)


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
    return (order, self.patch, tuple((k, _value_order(v)) for k, v in self.settings))


@dataclasses.dataclass(frozen=True)
class Cell:
  """Runs averaged into one table cell; `accuracies` are fractions, one per run.

  `validation` holds the runs' validation accuracies (fractions, one per run)
  when the cell's learning rate was selected on them; None otherwise.
  """
  accuracies: tuple[float, ...]
  runs: tuple[collect.RunResult, ...]
  learning_rate: float | None = None
  paper: paper_lib.PaperNumber | None = None
  validation: tuple[float, ...] | None = None

  @property
  def selected_on_validation(self) -> bool:
    return self.validation is not None

  @property
  def validation_mean_pct(self) -> float | None:
    if not self.validation:
      return None
    return 100.0 * math.fsum(self.validation) / len(self.validation)

  @property
  def n(self) -> int:
    return len(self.accuracies)

  @property
  def failed(self) -> int:
    """How many of the cell's runs the runner flagged as failing to train."""
    return sum(run.training_alarm is not None for run in self.runs)

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
    kind: "transfer", "ssd_to_imagenet", "lr_sweep", "taps", "multitask",
      "multires", "sequential", or "other:<experiment>".
    table_id: unique file-name stem ("transfer_mobilenet_v2").
    title: the table's heading.
    model: architecture name.
    rows: row keys, in display order.
    columns: column keys, in display order.
    column_labels: column key -> header text.
    cells: (row, column) -> Cell; absent where no run exists.
    settings: setting -> value shared by every run in the table.
    main_learning_rate: transfer and TAPS tables: the learning rate cells are
      taken at.
    dataset: lr_sweep / taps / multires tables: the dataset they are about.
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


def applies(run: collect.RunResult, key: str) -> bool:
  """Whether setting `key` applies to `run` (a kind's setting: only if it has the kind)."""
  return key not in KIND_SETTINGS or KIND_SETTINGS[key] in run.patch_kinds


def _setting(run: collect.RunResult, key: str) -> Any:
  if key == "image_size":
    return run.image_size
  if key == "learning_rate":
    return run.learning_rate
  default = KIND_SETTING_DEFAULTS.get(key, RECORD_DEFAULTS.get(key))
  value = run.config.get(key, default)
  if value is None and key in KIND_SETTING_FALLBACKS:
    return KIND_SETTING_FALLBACKS[key]
  return value


def _formatted(run: collect.RunResult, key: str) -> str:
  """The run's setting as text; a kind's numeric setting as "%g" ("taps_lambda=10")."""
  value = _setting(run, key)
  if key in KIND_SETTINGS and isinstance(value, float):
    return f"{value:g}"
  return format_setting(value)


def split_settings(runs: Sequence[collect.RunResult], keys: Iterable[str]):
  """Splits `keys` into those shared by every run and those that differ.

  A kind's setting (`KIND_SETTINGS`) is compared among the runs with that kind
  only; shared by them but not every run has the kind, its caption value says
  so ("1 (taps runs only)").

  Returns:
    (varying, shared): varying is a tuple of keys whose values differ between
    runs; shared maps each other key present in the runs to its formatted value.
  """
  varying, shared = [], {}
  for key in keys:
    members = [run for run in runs if applies(run, key)]
    values = {_formatted(run, key) for run in members}
    if len(values) > 1:
      varying.append(key)
    elif values and values != {"null"}:
      value = values.pop()
      if len(members) < len(runs):
        value += f" ({KIND_SETTINGS[key]} runs only)"
      shared[key] = value
  return tuple(varying), shared


def row_key(run: collect.RunResult, varying: Sequence[str]) -> RowKey:
  settings = tuple((key, _formatted(run, key)) for key in varying if applies(run, key))
  return RowKey(run.patch_kinds, settings)


def _log_distance(lr: float | None, target: float | None) -> float:
  if lr == target:
    return 0.0
  if lr is None or target is None or lr <= 0 or target <= 0:
    return math.inf
  return abs(math.log(lr / target))


def nearest_lr(candidates: Iterable[float | None], target: float | None):
  """The candidate nearest `target` on a log scale; ties go to the larger one."""
  return min(candidates, key=lambda lr: (_log_distance(lr, target),
                                         -(lr if lr is not None else -math.inf)))


def main_learning_rate(learning_rates: Sequence[float | None]) -> float | None:
  """The learning rate most runs used; ties go to the one nearest the paper's."""
  counts = collections.Counter(learning_rates)
  most = max(counts.values())
  return nearest_lr([lr for lr, c in counts.items() if c == most], PAPER_LEARNING_RATE)


def dataset_sort_key(name: str):
  """Datasets in the paper's order (PAPER.md), others after by name; subsets beside their set."""
  base = name.split(":")[0]
  order = DATASET_ORDER.index(base) if base in DATASET_ORDER else len(DATASET_ORDER)
  return (order, base, name)


def slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:100]


def best_validation_lr(members, validation):
  """The learning rate whose runs have the best mean validation accuracy.

  Args:
    members: (run, ...) tuples of one cell, at any rates.
    validation: f(run) -> its validation accuracy, or None.

  Returns:
    The rate (ties: the one nearest the paper's); None (no rate) when no run
    has a validation accuracy. Runs without one do not count.
  """
  scores = collections.defaultdict(list)
  for run, *_ in members:
    if validation(run) is not None:
      scores[run.learning_rate].append(validation(run))
  if not scores:
    return None
  means = {lr: math.fsum(v) / len(v) for lr, v in scores.items()}
  best = max(means.values())
  return nearest_lr([lr for lr, m in means.items() if m == best], PAPER_LEARNING_RATE)


def _validation_members(members, validation, column):
  """(rate, its (run, accuracy) members, their validation accuracies), or None."""
  if validation is None:
    return None
  held = {run.workdir: validation(run, column) for run, _ in members}
  scored = [m for m in members if held[m[0].workdir] is not None]
  if not scored:
    return None
  lr = best_validation_lr(scored, lambda run: held[run.workdir])
  chosen = sorted((m for m in scored if m[0].learning_rate == lr), key=lambda m: m[0].workdir)
  return lr, chosen, tuple(held[run.workdir] for run, _ in chosen)


def validation_accuracy(run: collect.RunResult, column) -> float | None:
  """The run's validation accuracy on the column's task (None: not recorded)."""
  return run.tasks[column[0]].validation_accuracy


def make_cells(entries, pick_lr=None, paper_lookup=None, validation=None):
  """Groups (row, column, run, accuracy) entries into cells.

  Args:
    entries: iterable of (row, column, run, accuracy).
    pick_lr: if given, f(learning rates in the cell) -> the one to keep.
    paper_lookup: if given, f(row, column) -> PaperNumber | None.
    validation: if given, f(run, column) -> the run's validation accuracy on
      the column's task, or None. A cell whose runs have one keeps its runs at
      `best_validation_lr` instead of `pick_lr`'s rate (`Cell.validation`).

  Returns:
    {(row, column): Cell}.
  """
  grouped = collections.defaultdict(list)
  for row, column, run, accuracy in entries:
    grouped[(row, column)].append((run, accuracy))
  cells = {}
  for key, members in grouped.items():
    lr = None
    selected = _validation_members(members, validation, key[1])
    if selected is not None:
      lr, members, held = selected
      cells[key] = Cell(tuple(acc for _, acc in members), tuple(run for run, _ in members), lr,
                        paper_lookup(*key) if paper_lookup else None, validation=held)
      continue
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


def ordered_rows(cells) -> list[RowKey]:
  return sorted({row for row, _ in cells}, key=RowKey.sort_key)


def caption_settings(model, runs, shared) -> dict[str, str]:
  """Model, the image size(s) of the runs, then their shared settings."""
  sizes = sorted({run.image_size for run in runs if run.image_size is not None})
  size = {"image_size": ", ".join(map(str, sizes))} if sizes else {}
  return {"model": model, **size, **shared}


def column_labels(columns) -> dict[Hashable, str]:
  """(task, image size or None) columns -> "cifar10", or "cifar10 @96px" if sizes differ."""
  return {c: c[0] if c[1] is None else f"{c[0]} @{c[1]}px" for c in columns}
