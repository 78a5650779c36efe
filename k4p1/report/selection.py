"""What tables say about learning rates selected on validation accuracy.

Runs with `validation_fraction` hold out part of each task's training split
and record the task's accuracy on it (`tasks.<task>.validation_accuracy`).
A transfer cell whose runs have one shows test accuracy at the rate with the
best mean validation accuracy (`cells.best_validation_lr`); a sweep table
shows every rate's mean validation accuracy and marks that rate. Tables of
runs without validation accuracies render as before: nothing here applies.
"""

from typing import Hashable

from k4p1.report import cells as cells_lib


def selected_cells(grid: cells_lib.Grid) -> list[cells_lib.Cell]:
  """The grid's cells that carry validation accuracies."""
  return [cell for cell in grid.cells.values() if cell.selected_on_validation]


def fractions_text(cells) -> str:
  """"validation_fraction=0.2" (or "=0.1, 0.2") of the cells' runs."""
  values = sorted({run.config.get("validation_fraction") for cell in cells
                   for run in cell.runs} - {None})
  shown = ", ".join(f"{v:g}" for v in values) if values else "not recorded"
  return f"validation_fraction={shown}"


def transfer_lr_sentence(grid: cells_lib.Grid) -> str:
  """The transfer caption's learning-rate sentence."""
  lr = grid.main_learning_rate
  nearest = ("Learning rate: " + (f"{lr:g}" if lr is not None else "not recorded")
             + "; a cell with no run at it shows its runs at the nearest rate (@lr=...).")
  selected = selected_cells(grid)
  if not selected:
    return nearest
  how = ("the rate with the best mean validation accuracy over its runs ("
         f"{fractions_text(selected)} of each training split, held out of training); "
         "cells show test accuracy at that rate; @lr=... gives it.")
  if len(selected) == len(grid.cells):
    return f"Learning rate: per row and dataset, {how}"
  return f"{nearest} Cells whose runs recorded validation accuracies instead take {how}"


def selected_rates(grid: cells_lib.Grid) -> dict[cells_lib.RowKey, Hashable]:
  """Sweep grids: each row's rate with the best mean validation accuracy."""
  chosen = {}
  for row in grid.rows:
    cells = [grid.cells[(row, lr)] for lr in grid.columns
             if grid.cells.get((row, lr)) and grid.cells[(row, lr)].selected_on_validation]
    held = {run.workdir: value for cell in cells
            for run, value in zip(cell.runs, cell.validation)}
    members = [(run,) for cell in cells for run in cell.runs]
    if members:
      chosen[row] = cells_lib.best_validation_lr(members, lambda run: held[run.workdir])
  return chosen


def sweep_cell_suffix(cell: cells_lib.Cell | None, selected: bool) -> str:
  """" (val 72.0)" or " (val 72.0; selected)" after a sweep cell's accuracy."""
  if cell is None or not cell.selected_on_validation:
    return ""
  return f" (val {cell.validation_mean_pct:.1f}{'; selected' if selected else ''})"


def sweep_sentence(grid: cells_lib.Grid) -> str:
  """The sweep caption's clause on validation ("" without validation runs)."""
  selected = selected_cells(grid)
  if not selected:
    return ""
  return (f"; (val ...): mean validation accuracy (%) of the cell's runs "
          f"({fractions_text(selected)} of each training split, held out of training); "
          "\"selected\": each row's rate with the best one, the rate its transfer-table cell "
          "shows.")


def validation_csv(cell: cells_lib.Cell | None) -> str:
  """A cell's mean validation accuracy in percent for CSVs ("" when none)."""
  if cell is None or not cell.selected_on_validation:
    return ""
  return repr(round(cell.validation_mean_pct, 4))
