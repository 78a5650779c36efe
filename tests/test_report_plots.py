"""Tests for k4p1.report.plots: what is drawn, and that PNGs are written."""

import numpy as np
import pytest

from helpers import report_testing as testing
from k4p1.report import collect
from k4p1.report import grids as grids_lib
from k4p1.report import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def grids_by_id(tmp_path):
  """InceptionV3 on two paper datasets + cifar10 (3 patches), and a 3-rate sweep on cifar10."""
  accuracy = {"logits": 0.5, "logits+scale_bias": 0.7, "full": 0.8}
  trained = {"logits": 200, "logits+scale_bias": 220, "full": 9000}
  for patch in accuracy:
    for dataset in ("oxford_flowers102", "cars196", "cifar10"):
      testing.write_run(tmp_path / "main" / patch / dataset, model="inception_v3",
                        patch=patch, tasks={dataset: accuracy[patch]},
                        patch_trainable=trained[patch])
  for lr in (0.01, 0.1):
    testing.write_run(tmp_path / "sweep" / f"sb{lr}", model="inception_v3",
                      tasks={"cifar10": 0.6 + lr}, patch_trainable=220, learning_rate=lr)
    testing.write_run(tmp_path / "sweep" / f"full{lr}", model="inception_v3", patch="full",
                      tasks={"cifar10": 0.9 - lr}, patch_trainable=9000, learning_rate=lr)
  testing.write_run(tmp_path / "sweep" / "full0.01_seed1", model="inception_v3", patch="full",
                    tasks={"cifar10": 0.87}, patch_trainable=9000, learning_rate=0.01)
  testing.write_run(tmp_path / "mt", experiment="multitask", tasks={"a": 0.5, "b": 0.6})
  return {g.table_id: g for g in grids_lib.build_grids(collect.collect_runs(tmp_path))}


def test_accuracy_vs_params_plot(grids_by_id):
  grid = grids_by_id["transfer_inception_v3"]
  fig = plots.plot_accuracy_vs_params(grid)
  (ax,) = fig.axes
  assert ax.get_xscale() == "log"
  assert "trained parameters" in ax.get_xlabel()
  assert "accuracy" in ax.get_ylabel()
  assert "inception_v3" in ax.get_title()
  # One line per dataset (3) + a dashed paper line per dataset with paper numbers (2).
  lines = ax.get_lines()
  assert len(lines) == 5
  assert sum(line.get_linestyle() == "--" for line in lines) == 2
  solid = [line for line in lines if line.get_linestyle() == "-"]
  for line in solid:   # sorted by trained parameters, at our accuracies
    np.testing.assert_array_equal(line.get_xdata(), [200, 220, 9000])
    np.testing.assert_allclose(line.get_ydata(), [50.0, 70.0, 80.0])
  paper_y = sorted(tuple(line.get_ydata()) for line in lines if line.get_linestyle() == "--")
  assert paper_y == [(55.0, 81.0), (84.5, 90.4)]
  # One marker per cell (9 ours + 4 paper).
  assert len(ax.collections) == 13
  legend_texts = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
  assert {"cars196", "cars196 (paper)", "cifar10", "logits", "logits+scale_bias", "full"} <= (
      legend_texts)
  assert "cifar10 (paper)" not in legend_texts


def test_accuracy_vs_learning_rate_plot(grids_by_id):
  grid = grids_by_id["lr_sweep_inception_v3_cifar10"]
  fig = plots.plot_accuracy_vs_learning_rate(grid)
  (ax,) = fig.axes
  assert ax.get_xscale() == "log"
  assert "learning rate" in ax.get_xlabel()
  lines = {line.get_label(): line for line in ax.get_lines()}
  # Every patch with a run on the dataset, even at one rate only (logits).
  assert sorted(lines) == ["full", "logits", "logits+scale_bias"]
  np.testing.assert_array_equal(lines["logits"].get_xdata(), [0.045])
  np.testing.assert_array_equal(lines["logits+scale_bias"].get_xdata(), [0.01, 0.045, 0.1])
  np.testing.assert_allclose(lines["logits+scale_bias"].get_ydata(), [61.0, 70.0, 70.0])
  np.testing.assert_allclose(lines["full"].get_ydata(), [88.0, 80.0, 80.0])
  assert len(ax.collections) == 1   # std band only where a rate has several runs (full)


def test_plot_grid_dispatch_and_filenames(grids_by_id):
  assert plots.plot_grid(grids_by_id["transfer_inception_v3"]) is not None
  assert plots.plot_filename(grids_by_id["transfer_inception_v3"]) == (
      "transfer_inception_v3_params.png")
  assert plots.plot_filename(grids_by_id["lr_sweep_inception_v3_cifar10"]) == (
      "lr_sweep_inception_v3_cifar10_lr.png")
  multitask = [g for g in grids_by_id.values() if g.kind == "multitask"]
  assert len(multitask) == 1 and plots.plot_grid(multitask[0]) is None


def test_save_figure_writes_png_atomically(grids_by_id, tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  path = plots.save_figure(plots.plot_grid(grids_by_id["transfer_inception_v3"]),
                           out / "p.png")
  data = path.read_bytes()
  assert data.startswith(PNG_MAGIC) and len(data) > 10_000
  assert [p.name for p in out.iterdir()] == ["p.png"]
