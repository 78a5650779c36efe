"""PNG plots of the tables: accuracy vs parameters, accuracy vs learning rate.

Figures are `matplotlib.figure.Figure`s on an Agg canvas, never pyplot: no
global backend switch (a user's notebook keeps its own), plotting works
headless, and figures need no closing.
"""

import collections
import math
import os
import pathlib

from matplotlib import figure as figure_lib
from matplotlib import lines as lines_lib
from matplotlib.backends import backend_agg

from k4p1 import atomic
from k4p1 import paths
from k4p1.report import grids as grids_lib
from k4p1.report import selection
from k4p1.report import taps as taps_lib

_MARKERS = "osD^vP*Xh<>p"
_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
           "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]


def _mean(values) -> float:
  return math.fsum(values) / len(values)


def _new_figure(figsize) -> figure_lib.Figure:
  fig = figure_lib.Figure(figsize=figsize, dpi=110, layout="constrained")
  backend_agg.FigureCanvasAgg(fig)
  return fig


def _row_styles(grid: grids_lib.Grid) -> dict[grids_lib.RowKey, str]:
  return {row: _MARKERS[i % len(_MARKERS)] for i, row in enumerate(grid.rows)}


def plot_accuracy_vs_params(grid: grids_lib.Grid) -> figure_lib.Figure:
  """Accuracy vs trained parameters (log x) of a transfer grid.

  One solid line per dataset through its patch kinds (sorted by trained
  parameters; rows with other settings, e.g. bn_stats=frozen, get their own
  dotted line); the marker says the patch kind. The paper's numbers, where
  available, are hollow markers on a dashed line at our runs' parameter counts.

  Args:
    grid: a "transfer" or "ssd_to_imagenet" grid.

  Returns:
    The Figure; its axes hold one line per dataset plus one per dataset with
    paper numbers.
  """
  fig = _new_figure((10, 5.8))
  ax = fig.add_subplot()
  markers = _row_styles(grid)
  used_rows = set()
  dataset_handles = []
  for i, column in enumerate(grid.columns):
    color = _COLORS[i % len(_COLORS)]
    points = sorted(((_mean(cell.trained_params), cell.mean_pct, row, cell)
                     for (row, col), cell in grid.cells.items() if col == column),
                    key=lambda p: (p[0], p[1], p[2].sort_key()))
    if not points:
      continue
    # One line per setting group (e.g. bn_stats=task vs frozen): joining rows
    # with different settings would zig-zag between unrelated points.
    for settings, dash in zip(sorted({p[2].settings for p in points}), ("-", ":", "-.")):
      group = [p for p in points if p[2].settings == settings]
      ax.plot([p[0] for p in group], [p[1] for p in group], dash, color=color, linewidth=1.5)
    for x, y, row, _ in points:
      ax.scatter([x], [y], marker=markers[row], s=70, color=color, zorder=3)
      used_rows.add(row)
    label = grid.column_labels[column]
    dataset_handles.append(lines_lib.Line2D([], [], color=color, label=label))
    paper_points = [(x, cell.paper.accuracy_pct, row) for x, _, row, cell in points if cell.paper]
    if paper_points:
      ax.plot([p[0] for p in paper_points], [p[1] for p in paper_points], "--", color=color,
              linewidth=1.2)
      for x, y, row in paper_points:
        ax.scatter([x], [y], marker=markers[row], s=70, facecolors="none", edgecolors=color,
                   zorder=3)
      dataset_handles.append(lines_lib.Line2D([], [], color=color, linestyle="--",
                                              marker="o", markerfacecolor="none",
                                              label=f"{label} (paper)"))
  ax.set_xscale("log")
  ax.set_xlabel("trained parameters (log scale)")
  ax.set_ylabel("top-1 accuracy (%)")
  ax.grid(True, which="both", alpha=0.3)
  lr = grid.main_learning_rate
  ax.set_title(f"{grid.title}\naccuracy vs trained parameters"
               + (f" at learning rate {lr:g}" if lr is not None else ""), fontsize=11)
  patch_handles = [lines_lib.Line2D([], [], color="black", linestyle="", marker=markers[row],
                                    label=row.label) for row in grid.rows if row in used_rows]
  # "outside" legends make constrained layout shrink the axes to fit them.
  fig.legend(handles=dataset_handles, title="dataset", loc="outside right upper", fontsize=9)
  fig.legend(handles=patch_handles, title="patch", loc="outside right lower", fontsize=9)
  return fig


def plot_accuracy_vs_learning_rate(grid: grids_lib.Grid) -> figure_lib.Figure:
  """Accuracy vs learning rate (log x) of a learning-rate-sweep grid, one line per patch.

  A shaded band shows ± one sample std where a learning rate has several runs.

  Args:
    grid: an "lr_sweep" grid.

  Returns:
    The Figure; its axes hold exactly one line per row of the grid.
  """
  fig = _new_figure((9, 5.5))
  ax = fig.add_subplot()
  markers = _row_styles(grid)
  for i, row in enumerate(grid.rows):
    color = _COLORS[i % len(_COLORS)]
    points = [(lr, grid.cells[(row, lr)]) for lr in grid.columns if (row, lr) in grid.cells]
    xs = [lr for lr, _ in points]
    ys = [cell.mean_pct for _, cell in points]
    ax.plot(xs, ys, "-", marker=markers[row], color=color, label=row.label, markersize=7)
    if any(cell.n > 1 for _, cell in points):
      stds = [cell.std_pct or 0.0 for _, cell in points]
      ax.fill_between(xs, [y - s for y, s in zip(ys, stds)], [y + s for y, s in zip(ys, stds)],
                      color=color, alpha=0.15, linewidth=0)
  ax.set_xscale("log")
  ax.set_xlabel("learning rate (log scale)")
  ax.set_ylabel("top-1 accuracy (%)")
  ax.grid(True, which="both", alpha=0.3)
  ax.set_title(f"{grid.title}\n(paper, App. B.2: small patches gain from larger rates)",
               fontsize=11)
  fig.legend(title="patch", loc="outside right upper", fontsize=9)
  return fig


def plot_taps(grid: grids_lib.Grid) -> figure_lib.Figure:
  """Accuracy vs task-specific (stored) parameters (log x) of a TAPS/LoRA grid.

  One point per row (patch, TAPS lambda, LoRA rank) at its runs' mean, with
  error bars of ± one sample std of accuracy and of stored parameters over the
  runs (seeds); the rows of one TAPS or LoRA patch (lambdas, ranks) are joined
  by a line in order of their parameters (TAPS dotted, LoRA dashed), and the
  rows on the accuracy-parameters frontier (`taps.frontier`) are ringed.

  Args:
    grid: a "taps" grid.

  Returns:
    The Figure; its axes hold one errorbar container per row with stored
    parameters recorded, plus one line per TAPS or LoRA patch with two or
    more rows.
  """
  fig = _new_figure((12, 6.5))
  ax = fig.add_subplot()
  markers = _row_styles(grid)
  ((task, _),) = grid.columns
  families = collections.defaultdict(list)
  best = taps_lib.frontier(grid)
  for i, row in enumerate(grid.rows):
    cell = grid.cells[(row, grid.columns[0])]
    stats = taps_lib.cell_stats(cell, task)
    if stats.stored_mean is None:
      continue
    color = _COLORS[i % len(_COLORS)]
    ax.errorbar([stats.stored_mean], [cell.mean_pct], yerr=[cell.std_pct or 0.0],
                xerr=[stats.stored_std or 0.0], marker=markers[row], markersize=8,
                color=color, capsize=4, linestyle="", label=row.label)
    if row in best:
      ax.scatter([stats.stored_mean], [cell.mean_pct], s=260, facecolors="none",
                 edgecolors="black", linewidths=1.0, zorder=3)
    if row.kinds & set(taps_lib.BUDGET_KINDS):
      families[row.kinds].append((stats.stored_mean, cell.mean_pct))
  for kinds, points in families.items():
    if len(points) > 1:
      points.sort()
      ax.plot([x for x, _ in points], [y for _, y in points],
              ":" if taps_lib.TAPS_KIND in kinds else "--", color="gray",
              linewidth=1.2, zorder=1)
  ax.set_xscale("log")
  ax.set_xlabel("task-specific parameters kept (params.patch_stored, log scale)")
  ax.set_ylabel("top-1 accuracy (%)")
  ax.grid(True, which="both", alpha=0.3)
  lr = grid.main_learning_rate
  if selection.selected_cells(grid):
    rate = "learning rate per row selected on validation"
  else:
    rate = f"learning rate {lr:g}" if lr is not None else "learning rate not recorded"
  # The grid's title is long and the legend wide: a short title in the axes' width.
  ax.set_title(f"Accuracy vs task-specific parameters\n{grid.model} on {grid.dataset}; "
               f"{rate}\nerror bars: ± 1 std over runs; ringed: on the frontier", fontsize=10)
  fig.legend(title="patch", loc="outside right upper", fontsize=9)
  return fig


def plot_grid(grid: grids_lib.Grid) -> figure_lib.Figure | None:
  """The grid's plot, or None for kinds that have none."""
  if grid.kind in ("transfer", "ssd_to_imagenet"):
    return plot_accuracy_vs_params(grid)
  if grid.kind == "taps":
    return plot_taps(grid)
  if grid.kind == "lr_sweep":
    return plot_accuracy_vs_learning_rate(grid)
  return None


def plot_filename(grid: grids_lib.Grid) -> str:
  """"transfer_mobilenet_v2_params.png", "lr_sweep_..._lr.png"."""
  return f"{grid.table_id}_{'lr' if grid.kind == 'lr_sweep' else 'params'}.png"


def save_figure(fig: figure_lib.Figure,
                path: str | os.PathLike[str]) -> pathlib.Path | str:
  """Writes `fig` as PNG to `path` (local, or a URL: returned as a str) atomically."""
  path = os.fspath(path) if paths.is_url(path) else pathlib.Path(path)
  with atomic.output_path(path) as tmp:
    fig.savefig(tmp, format="png")
  return path
