"""Renders grids as paper-shaped Markdown and CSV tables (pure functions, no I/O).

Markdown is for people (accuracy with one decimal, like the paper); the CSV of
the same table is for programs (one column per quantity, more digits, the
workdirs of every cell).
"""

import csv
import dataclasses
import io
from typing import Sequence

from k4p1.report import grids as grids_lib
from k4p1.report import paper
from k4p1.report import selection
from k4p1.report import taps as taps_lib

NO_RUN = "—"
PCT_OF_MODEL = (
    "Trained params: the patch's trainable parameters (`params.patch_trainable`, logits layer "
    "included); % of model: trained params / `params.total`, every weight of one task's model "
    "= the base feature extractor (BN moving statistics included) + that task's logits layer.")
LEGEND = (
    "Accuracy: top-1 % on the evaluation split; a cell with several runs (e.g. seeds) shows "
    "mean ± sample std (n=runs). \"(paper)\": the paper's published number, where one is "
    f"available here (../shared/PAPER.md); {paper.NOT_AVAILABLE} where it is not -- never an "
    f"estimate. {NO_RUN}: no run, or not recorded. {PCT_OF_MODEL}")


@dataclasses.dataclass
class Table:
  """A rendered table.

  Attributes:
    table_id: file-name stem of its CSV.
    title: heading.
    caption: sentences printed above the table.
    md_header, md_rows: the Markdown table's cells (strings).
    csv_header, csv_rows: the CSV's cells (strings).
    sources: (workdir, command) of every run whose numbers appear.
  """
  table_id: str
  title: str
  caption: str
  md_header: list[str]
  md_rows: list[list[str]]
  csv_header: list[str]
  csv_rows: list[list[str]]
  sources: list[tuple[str, str]]


def _pct(value: float) -> str:
  return f"{value:.3g}%"


def _csv_pct(value: float) -> str:
  return repr(round(value, 4))


def _span(values: Sequence, fmt) -> str:
  """One value, or "low–high" when the runs of a cell or row disagree."""
  if not values:
    return NO_RUN
  return fmt(values[0]) if len(values) == 1 else f"{fmt(values[0])}–{fmt(values[-1])}"


def _csv_span(values: Sequence, fmt=str) -> str:
  return ";".join(fmt(v) for v in values)


def format_accuracy(cell: grids_lib.Cell | None, main_lr: float | None = None) -> str:
  """"90.1", "90.1 ± 0.3 (n=3)", with " @lr=0.1" when not at the table's main rate.

  A cell whose rate was selected on validation always names it (given `main_lr`);
  a cell with runs the runner flagged (`training_alarm`) says how many.
  """
  if cell is None:
    return NO_RUN
  text = f"{cell.mean_pct:.1f}"
  if cell.n > 1:
    text += f" ± {cell.std_pct:.1f} (n={cell.n})"
  if main_lr is not None and (cell.learning_rate != main_lr or cell.selected_on_validation):
    text += f" @lr={cell.learning_rate:g}" if cell.learning_rate is not None else " @lr=unset"
  if cell.failed:  # `training_alarm`: not a trained patch's accuracy.
    text += f" (training failed: {cell.failed} of {cell.n} runs)"
  return text


def format_params(cell_or_runs) -> str:
  """"46,922 (2.07%)" from a Cell, or from runs (their params)."""
  if isinstance(cell_or_runs, grids_lib.Cell):
    trained, pct = cell_or_runs.trained_params, cell_or_runs.pct_of_model
  else:
    runs = cell_or_runs
    if not runs:
      return NO_RUN
    trained = sorted({r.params["patch_trainable"] for r in runs})
    pct = sorted({100.0 * r.params["patch_trainable"] / r.params["total"] for r in runs})
  return f"{_span(trained, '{:,}'.format)} ({_span(pct, _pct)})"


def _paper_text(cell: grids_lib.Cell | None) -> str:
  if cell is None or cell.paper is None:
    return paper.NOT_AVAILABLE
  return f"{cell.paper.accuracy_pct:.1f}"


def _cell_csv(cell: grids_lib.Cell | None) -> list[str]:
  """accuracy %, std, n, learning rate, trained params, % of model, workdirs."""
  if cell is None:
    return [""] * 7
  return [_csv_pct(cell.mean_pct), "" if cell.std_pct is None else _csv_pct(cell.std_pct),
          str(cell.n), "" if cell.learning_rate is None else repr(cell.learning_rate),
          _csv_span(cell.trained_params), _csv_span(cell.pct_of_model, _csv_pct),
          ";".join(run.workdir for run in cell.runs)]


def _cell_csv_header(label: str) -> list[str]:
  return [f"{label} {name}" for name in ("accuracy %", "std", "n", "learning rate",
                                         "trained params", "% of model", "workdirs")]


def _row_csv_start(row: grids_lib.RowKey) -> list[str]:
  return [row.patch, ", ".join(f"{k}={v}" for k, v in row.settings)]


def _settings_sentence(grid: grids_lib.Grid) -> str:
  settings = ", ".join(f"{k}={v}" for k, v in grid.settings.items())
  text = f"Settings of every run: {settings}."
  varying = sorted({k for row in grid.rows for k, _ in row.settings})
  if varying:
    text += f" Rows also differ in: {', '.join(varying)}."
  return text


def _transfer_table(grid: grids_lib.Grid) -> Table:
  md_header, csv_header = ["patch"], ["patch", "settings"]
  for column in grid.columns:
    label = grid.column_labels[column]
    md_header += [label, f"{label} (paper)", f"{label} trained params (% of model)"]
    csv_header += _cell_csv_header(label)[:4] + [f"{label} (paper)"] + _cell_csv_header(label)[4:]
  md_rows, csv_rows = [], []
  for row in grid.rows:
    md_row, csv_row = [row.label], _row_csv_start(row)
    for column in grid.columns:
      cell = grid.cells.get((row, column))
      md_row += [format_accuracy(cell, grid.main_learning_rate), _paper_text(cell),
                 format_params(cell) if cell else NO_RUN]
      values = _cell_csv(cell)
      csv_row += values[:4] + [_paper_text(cell)] + values[4:]
    md_rows.append(md_row)
    csv_rows.append(csv_row)
  _add_validation_csv(grid, csv_header, csv_rows)
  caption = ["Top-1 accuracy (%) after training each patch on each dataset. "
             + _settings_sentence(grid), selection.transfer_lr_sentence(grid)]
  sources = sorted({c.paper.source for c in grid.cells.values() if c.paper})
  if sources:
    caption.append("Paper numbers: " + "; ".join(sources) + ".")
  if grid.kind == "ssd_to_imagenet":
    caption.append("The paper reports this experiment (an SSD MobileNetV2 detector's feature "
                   "extractor turned into an ImageNet classifier with an S/B patch, reusing 98% "
                   f"of its parameters), but its accuracies are not available here: "
                   f"{paper.NOT_AVAILABLE}.")
  return _table(grid, " ".join(caption), md_header, md_rows, csv_header, csv_rows)


def _add_validation_csv(grid: grids_lib.Grid, csv_header, csv_rows) -> None:
  """Appends each column's mean validation accuracy when the grid has any."""
  if not selection.selected_cells(grid):
    return
  csv_header += [f"{grid.column_labels[c]} validation accuracy %" for c in grid.columns]
  for row, csv_row in zip(grid.rows, csv_rows):
    csv_row += [selection.validation_csv(grid.cells.get((row, c))) for c in grid.columns]


def _sweep_table(grid: grids_lib.Grid) -> Table:
  labels = [grid.column_labels[c] for c in grid.columns]
  md_rows, csv_rows = [], []
  chosen = selection.selected_rates(grid)
  for row in grid.rows:
    cells = [grid.cells.get((row, c)) for c in grid.columns]
    md_rows.append([row.label] + [
        format_accuracy(cell) + selection.sweep_cell_suffix(cell, chosen.get(row, ()) == lr)
        for lr, cell in zip(grid.columns, cells)] + [format_params(grid.row_runs(row))])
    csv_rows.append(_row_csv_start(row) + [v for c in cells for v in _cell_csv(c)])
  csv_header = ["patch", "settings"] + [h for label in labels for h in _cell_csv_header(label)]
  _add_validation_csv(grid, csv_header, csv_rows)
  caption = (f"Top-1 accuracy (%) on {grid.dataset} at each learning rate"
             f"{selection.sweep_sentence(grid) or '.'} {_settings_sentence(grid)} "
             "The paper shows this sweep in Appendix B.2 (Figure 9: with small patches, accuracy "
             "grows with the learning rate, unlike full fine-tuning); its numbers are not "
             f"available here: {paper.NOT_AVAILABLE}.")
  return _table(grid, caption, ["patch"] + labels + ["trained params (% of model)"], md_rows,
                csv_header, csv_rows)


def _system_columns(runs) -> tuple[list[str], list[str]]:
  """Markdown and CSV texts of system params, separate-models params and their ratio."""
  system = sorted({r.system_params for r in runs if r.system_params is not None})
  separate = sorted({r.separate_models_params for r in runs
                     if r.separate_models_params is not None})
  ratios = sorted({100.0 * r.system_params / r.separate_models_params for r in runs
                   if r.system_params is not None and r.separate_models_params})
  md = [_span(system, "{:,}".format), _span(separate, "{:,}".format), _span(ratios, _pct)]
  return md, [_csv_span(system), _csv_span(separate), _csv_span(ratios, _csv_pct)]


def _per_task_table(grid: grids_lib.Grid) -> Table:
  """Multi-task, sequential, multi-resolution and other per-task tables."""
  labels = [grid.column_labels[c] for c in grid.columns]
  extra = ["trained params (% of model)", "system params", "separate models params",
           "system / separate"]
  md_rows, csv_rows = [], []
  for row in grid.rows:
    runs = grid.row_runs(row)
    cells = [grid.cells.get((row, c)) for c in grid.columns]
    system_md, system_csv = _system_columns(runs)
    md_rows.append([row.label] + [format_accuracy(c) for c in cells] + [format_params(runs)]
                   + system_md)
    csv_rows.append(_row_csv_start(row) + [v for c in cells for v in _cell_csv(c)]
                    + [_csv_span(sorted({r.params["patch_trainable"] for r in runs}))] + system_csv)
  if grid.kind == "multires":
    what = (f"Top-1 accuracy (%) of one model on {grid.dataset} at each input resolution, "
            "one patch per resolution (task keys \"<dataset>@<pixels>\").")
  else:
    what = "Top-1 accuracy (%) of each task."
  caption = (f"{what} {_settings_sentence(grid)} System params: the whole system's parameters "
             "(shared base + every task's patch); separate models params: K independently "
             "fine-tuned models (`system_params`, `separate_models_params`). The paper's numbers "
             f"for this experiment are not available here: {paper.NOT_AVAILABLE}.")
  return _table(grid, caption, ["patch"] + labels + extra, md_rows,
                ["patch", "settings"] + [h for label in labels for h in _cell_csv_header(label)]
                + ["trained params", "system params", "separate models params",
                   "system / separate %"], csv_rows)


TAPS_CAPTION = (
    "Task-specific params: what the task's patch file stores after training "
    "(`params.patch_stored`; mean ± sample std where runs differ): for TAPS, the residuals of "
    "the convolutions whose gates are open + every gate's score + the task's BatchNormalization "
    "layers (gammas, betas and moving statistics) + the logits layer; for LoRA, both rank-r "
    "factors of every Conv2D and Dense kernel (r·(k·k·C_in + C_out) each) + the task's BN "
    "layers where the patch has S/B + the logits layer; for the fixed kinds the same definition "
    "(their trained weights + the task's BN moving statistics, where the patch has its own BN, "
    "+ the logits layer), so the rows compare like for like. Trained params: what training "
    "updates (`params.patch_trainable`; for TAPS every residual, open or not). % of model: "
    "task-specific params / `params.total`. Frontier: yes when no other row is at least as "
    "accurate (mean) with at most as many task-specific params (mean), one of them strictly. "
    "Open layers: gated convolutions whose gate is open after training, mean over runs / gated "
    f"(`tasks.<task>.taps`), then by layer class; {NO_RUN} for rows without gates. Neither the "
    "paper, TAPS (Wallingford et al., CVPR 2022) nor LoRA publishes numbers for this setting: "
    f"no paper column ({paper.NOT_AVAILABLE}).")


def _fraction_text(fraction: taps_lib.Fraction | None) -> str:
  """"12.3 / 52 (23.7%)"."""
  if fraction is None:
    return NO_RUN
  return (f"{fraction.open_mean:.1f} / {_span(fraction.gated, str)} "
          f"({fraction.pct:.1f}%)")


def _stored_text(stats: taps_lib.CellStats) -> str:
  if stats.stored_mean is None:
    return NO_RUN
  text = f"{stats.stored_mean:,.0f}"
  return text + (f" ± {stats.stored_std:,.0f}" if len(set(stats.stored)) > 1 else "")


def _fraction_csv(fraction: taps_lib.Fraction | None) -> list[str]:
  if fraction is None:
    return ["", ""]
  return [repr(round(fraction.open_mean, 4)), _csv_span(fraction.gated)]


def _taps_rows(grid: grids_lib.Grid, classes: list[str]):
  """The TAPS table's Markdown and CSV rows."""
  md_rows, csv_rows = [], []
  ((task, _),) = grid.columns
  best = taps_lib.frontier(grid)
  for row in grid.rows:
    cell = grid.cells[(row, grid.columns[0])]
    stats = taps_lib.cell_stats(cell, task)
    by_class = [stats.by_class.get(name) if stats.gates else None for name in classes]
    pct = stats.stored_pct_mean
    md_rows.append([row.label, format_accuracy(cell, grid.main_learning_rate), _stored_text(stats),
                    NO_RUN if pct is None else _pct(pct), _span(stats.trained, "{:,}".format),
                    "yes" if row in best else "", _fraction_text(stats.gates)] + [_fraction_text(f) for f in by_class])
    csv_rows.append(
        _row_csv_start(row) + _cell_csv(cell)[:4]
        + ["" if pct is None else repr(round(stats.stored_mean, 4)),
           "" if stats.stored_std is None else repr(round(stats.stored_std, 4)),
           _csv_span(stats.stored), "" if pct is None else _csv_pct(pct),
           _csv_span(stats.trained), str(row in best).lower()]
        + _fraction_csv(stats.gates)
        + ["" if stats.gates is None else _csv_pct(stats.gates.pct)]
        + [v for f in by_class for v in _fraction_csv(f)]
        + [";".join(run.workdir for run in cell.runs)])
  return md_rows, csv_rows


def _taps_table(grid: grids_lib.Grid) -> Table:
  """TAPS and LoRA rows beside the fixed patch kinds: accuracy vs task-specific parameters."""
  classes = taps_lib.grid_layer_classes(grid)
  md_header = (["patch", "accuracy (%)", "task-specific params", "% of model", "trained params",
                "frontier", "open layers"] + [f"open {name}" for name in classes])
  csv_header = (["patch", "settings", "accuracy %", "std", "n", "learning rate",
                 "task-specific params", "task-specific params std",
                 "task-specific params per run", "% of model", "trained params", "frontier",
                 "open layers",
                 "gated layers", "open %"]
                + [f"{name} {what}" for name in classes for what in ("open", "gated")]
                + ["workdirs"])
  md_rows, csv_rows = _taps_rows(grid, classes)
  caption = (f"Top-1 accuracy (%) on {grid.dataset} against the parameters each task keeps, "
             "one row per patch, TAPS lambda (`taps_lambda`) and LoRA rank (`lora_rank`), over "
             f"every transfer run of this model and dataset. {_settings_sentence(grid)} "
             f"{selection.transfer_lr_sentence(grid)} {TAPS_CAPTION}")
  sources = [(run.workdir, run.command) for run in grid.runs()]
  return Table(grid.table_id, grid.title, caption, md_header, md_rows, csv_header, csv_rows,
               sources)


def _table(grid, caption, md_header, md_rows, csv_header, csv_rows) -> Table:
  sources = [(run.workdir, run.command) for run in grid.runs()]
  return Table(grid.table_id, grid.title, f"{caption} {PCT_OF_MODEL}", md_header, md_rows,
               csv_header, csv_rows, sources)


def build_table(grid: grids_lib.Grid) -> Table:
  """The Table of one grid."""
  if grid.kind in ("transfer", "ssd_to_imagenet"):
    return _transfer_table(grid)
  if grid.kind == "lr_sweep":
    return _sweep_table(grid)
  if grid.kind == "taps":
    return _taps_table(grid)
  return _per_task_table(grid)


def _md_cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
  """`text` as a Markdown code span, safe when it contains backticks."""
  if not text:
    return "(no command recorded)"
  text = " ".join(text.splitlines())
  fence = "``" if "`" in text else "`"
  pad = " " if fence == "``" else ""
  return f"{fence}{pad}{text}{pad}{fence}"


def render_markdown(table: Table) -> str:
  """One table as a Markdown section: heading, caption, table, sources."""
  lines = [f"## {table.title}", "", table.caption, "",
           "| " + " | ".join(_md_cell(h) for h in table.md_header) + " |",
           "|" + "---|" * len(table.md_header)]
  lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.md_rows]
  lines += ["", f"CSV: `{table.table_id}.csv`. Sources (workdir: command):", ""]
  lines += [f"- `{workdir}`: {_code(command)}" for workdir, command in table.sources]
  return "\n".join(lines) + "\n"


def render_csv(table: Table) -> str:
  """One table as CSV text (header row, then one row per table row)."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(table.csv_header)
  writer.writerows(table.csv_rows)
  return buffer.getvalue()


def render_document(tables: Sequence[Table], num_runs: int) -> str:
  """All tables as one Markdown document (tables.md)."""
  parts = ["# k4p1 results", "",
           f"Generated by `python -m experiments.make_tables` from {num_runs} results.json "
           f"file(s); {len(tables)} table(s).", "", LEGEND, ""]
  if not tables:
    parts += ["No table: no run matched a known experiment.", ""]
  return "\n".join(parts) + "\n" + "\n".join(render_markdown(t) for t in tables)
