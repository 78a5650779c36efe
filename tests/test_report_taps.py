"""Tests of the parameter-budget table: TAPS and LoRA rows beside the fixed kinds, and its plot."""

import numpy as np
import pytest

from helpers import report_testing as testing
from k4p1 import report
from k4p1.report import collect
from k4p1.report import grids as grids_lib
from k4p1.report import plots
from k4p1.report import tables

TAPS_TABLE = "taps_mobilenet_v2_mnist5k"
LABELS = ["logits", "logits+scale_bias", "logits+scale_bias+taps (taps_lambda=2)",
          "logits+scale_bias+taps (taps_lambda=10)"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(path, patch, seed, accuracy, stored, trainable, taps_lambda=1.0, opened=None,
         **kw):
  """A CPU-scale transfer run as the runner writes it (every run records taps_lambda).

  Args:
    opened: TAPS runs: (open Conv2D, open DepthwiseConv2D) of 35 and 17 gated.
  """
  data = testing.results_dict(
      patch=patch, image_size=32, tasks={"mnist5k": accuracy}, patch_trainable=trainable,
      total=10_000, learning_rate=kw.pop("learning_rate", 0.0142), command=f"cmd {path}",
      config={"taps_lambda": taps_lambda, "taps_threshold": 0.1, "seed": seed}, **kw)
  data["params"]["patch_stored"] = stored
  if opened is not None:
    conv, depthwise = opened
    data["tasks"]["mnist5k"]["taps"] = {
        "gated_layers": 52, "open_layers": conv + depthwise,
        "open_fraction": (conv + depthwise) / 52, "open_delta_params": 1, "gated_params": 2,
        "by_layer_class": {"Conv2D": {"gated": 35, "open": conv},
                           "DepthwiseConv2D": {"gated": 17, "open": depthwise}},
        "open": [], "scores": {}}
  return data


@pytest.fixture
def taps_dir(tmp_path):
  """TAPS at lambda 2 and 10 and two fixed kinds, 2 seeds each, plus one off-rate run."""
  runs = {
      "taps2-s0": _run("taps2-s0", "taps+scale_bias+logits", 0, 0.80, 5000, 9000, 2.0, (28, 12)),
      "taps2-s1": _run("taps2-s1", "taps+scale_bias+logits", 1, 0.84, 6000, 9000, 2.0, (30, 14)),
      "taps10-s0": _run("taps10-s0", "taps+scale_bias+logits", 0, 0.70, 1000, 9000, 10.0,
                        (6, 4)),
      "taps10-s1": _run("taps10-s1", "taps+scale_bias+logits", 1, 0.72, 1200, 9000, 10.0,
                        (8, 4)),
      "logits-s0": _run("logits-s0", "logits", 0, 0.60, 100, 100),
      "logits-s1": _run("logits-s1", "logits", 1, 0.62, 100, 100),
      "sb-s0": _run("sb-s0", "scale_bias+logits", 0, 0.65, 400, 250),
      "sb-s1": _run("sb-s1", "scale_bias+logits", 1, 0.67, 400, 250),
      "sb-lr0.5": _run("sb-lr0.5", "scale_bias+logits", 0, 0.10, 400, 250, learning_rate=0.5),
  }
  for name, data in runs.items():
    testing.write_run(tmp_path / name, data)
  return tmp_path


def _grids(results_dir):
  return {g.table_id: g for g in grids_lib.build_grids(collect.collect_runs(results_dir))}


def test_taps_table_rows_means_stored_params_and_open_layers(taps_dir):
  grid = _grids(taps_dir)[TAPS_TABLE]
  assert grid.kind == "taps" and grid.dataset == "mnist5k"
  assert [row.label for row in grid.rows] == LABELS   # lambdas in numeric order
  table = tables.build_table(grid)
  assert table.title == ("Accuracy vs task-specific parameters: TAPS beside the fixed patches "
                         "(mobilenet_v2 on mnist5k)")
  assert table.md_header == ["patch", "accuracy (%)", "task-specific params", "% of model",
                             "trained params", "frontier", "open layers", "open Conv2D",
                             "open DepthwiseConv2D"]
  # Each row is more accurate than every row with fewer parameters: all on the frontier.
  assert table.md_rows == [
      ["logits", "61.0 ± 1.4 (n=2)", "100", "1%", "100", "yes", "—", "—", "—"],
      ["logits+scale_bias", "66.0 ± 1.4 (n=2)", "400", "4%", "250", "yes", "—", "—", "—"],
      [LABELS[2], "82.0 ± 2.8 (n=2)", "5,500 ± 707", "55%", "9,000", "yes",
       "42.0 / 52 (80.8%)", "29.0 / 35 (82.9%)", "13.0 / 17 (76.5%)"],
      [LABELS[3], "71.0 ± 1.4 (n=2)", "1,100 ± 141", "11%", "9,000", "yes",
       "11.0 / 52 (21.2%)", "7.0 / 35 (20.0%)", "4.0 / 17 (23.5%)"]]
  # The off-rate run stays out; every other run is a source.
  assert [w for w, _ in table.sources] == sorted(
      ["taps2-s0", "taps2-s1", "taps10-s0", "taps10-s1", "logits-s0", "logits-s1", "sb-s0",
       "sb-s1"])
  for phrase in ("Learning rate: 0.0142", "Rows also differ in: taps_lambda.",
                 "taps_threshold=0.1 (taps runs only)", "`params.patch_stored`",
                 "residuals of the convolutions whose gates are open",
                 "moving statistics", "like for like", "no paper column (n/a)"):
    assert phrase in table.caption, phrase


def test_taps_table_csv(taps_dir):
  table = tables.build_table(_grids(taps_dir)[TAPS_TABLE])
  lines = tables.render_csv(table).splitlines()
  assert lines[0] == (
      "patch,settings,accuracy %,std,n,learning rate,task-specific params,"
      "task-specific params std,task-specific params per run,% of model,trained params,"
      "frontier,open layers,gated layers,open %,Conv2D open,Conv2D gated,DepthwiseConv2D open,"
      "DepthwiseConv2D gated,workdirs")
  assert lines[1] == (
      "logits,,61.0,1.4142,2,0.0142,100.0,0.0,100;100,1.0,100,true,,,,,,,,logits-s0;logits-s1")
  assert lines[3] == (
      "logits+scale_bias+taps,taps_lambda=2,82.0,2.8284,2,0.0142,5500.0,707.1068,5000;6000,"
      "55.0,9000,true,42.0,52,80.7692,29.0,35,13.0,17,taps2-s0;taps2-s1")


def test_taps_rows_in_the_transfer_table_name_lambda_fixed_rows_do_not(taps_dir):
  by_id = _grids(taps_dir)
  assert [g.kind for g in by_id.values()] == ["transfer", "lr_sweep", "taps"]
  transfer = tables.build_table(by_id["transfer_mobilenet_v2"])
  assert [row[0] for row in transfer.md_rows] == LABELS
  assert "taps_lambda=" not in transfer.caption.split("Rows also differ in")[0]
  sweep = tables.build_table(by_id["lr_sweep_mobilenet_v2_mnist5k"])
  assert [row[0] for row in sweep.md_rows] == LABELS


def test_one_lambda_goes_to_the_caption(tmp_path):
  testing.write_run(tmp_path / "t", _run("t", "taps+scale_bias+logits", 0, 0.8, 5000, 9000,
                                         0.1, (28, 12)))
  testing.write_run(tmp_path / "l", _run("l", "logits", 0, 0.6, 100, 100))
  table = tables.build_table(_grids(tmp_path)[TAPS_TABLE])
  assert [row[0] for row in table.md_rows] == ["logits", "logits+scale_bias+taps"]
  assert "taps_lambda=0.1 (taps runs only)" in table.caption
  assert "Rows also differ" not in table.caption


def test_taps_run_without_recorded_lambda_gets_the_default(tmp_path):
  old = _run("old", "taps+logits", 0, 0.5, 300, 900, opened=(1, 1))
  del old["config"]["taps_lambda"]
  testing.write_run(tmp_path / "old", old)
  testing.write_run(tmp_path / "new", _run("new", "taps+logits", 1, 0.7, 300, 900, 1.0,
                                           (1, 1)))
  (row,) = _grids(tmp_path)["taps_mobilenet_v2_mnist5k"].rows
  assert row.label == "logits+taps"


def test_taps_plot(taps_dir):
  fig = plots.plot_grid(_grids(taps_dir)[TAPS_TABLE])
  (ax,) = fig.axes
  assert ax.get_xscale() == "log"
  assert "task-specific parameters" in ax.get_xlabel()
  assert "accuracy" in ax.get_ylabel()
  assert len(ax.containers) == 4   # one errorbar per row
  points = sorted((c.lines[0].get_xdata()[0], c.lines[0].get_ydata()[0]) for c in ax.containers)
  np.testing.assert_allclose(points, [(100, 61.0), (400, 66.0), (1100, 71.0), (5500, 82.0)])
  (taps_line,) = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
  np.testing.assert_allclose(taps_line.get_xdata(), [1100, 5500])
  legend = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
  assert set(LABELS) <= legend


def test_write_report_writes_the_taps_table_csv_and_plot(taps_dir, tmp_path):
  out = tmp_path / "out"
  names = [p.name for p in report.write_report(taps_dir, out)]
  assert f"{TAPS_TABLE}.csv" in names and f"{TAPS_TABLE}_params.png" in names
  assert (out / f"{TAPS_TABLE}_params.png").read_bytes().startswith(PNG_MAGIC)
  document = (out / "tables.md").read_text()
  assert ("## Accuracy vs task-specific parameters: TAPS beside the fixed patches "
          "(mobilenet_v2 on mnist5k)") in document
  assert "| logits+scale_bias+taps (taps_lambda=10) | 71.0 ± 1.4 (n=2) | 1,100 ± 141 |" in (
      document)


def test_runs_without_taps_get_no_taps_table_and_no_lambda_clutter(tmp_path):
  recorded, unrecorded = tmp_path / "recorded", tmp_path / "unrecorded"
  for seed, accuracy in ((0, 0.6), (1, 0.62)):
    for patch in ("logits", "full"):
      data = _run(f"{patch}{seed}", patch, seed, accuracy, 100, 100)
      testing.write_run(recorded / f"{patch}{seed}", data)
      del data["config"]["taps_lambda"], data["config"]["taps_threshold"]
      testing.write_run(unrecorded / f"{patch}{seed}", data)
  rendered = {}
  for results_dir in (recorded, unrecorded):
    runs = collect.collect_runs(results_dir)
    built = [tables.build_table(g) for g in grids_lib.build_grids(runs)]
    assert [t.table_id for t in built] == ["transfer_mobilenet_v2"]
    rendered[results_dir] = tables.render_document(built, len(runs))
  assert rendered[recorded] == rendered[unrecorded]
  assert "taps" not in rendered[recorded]
  assert not [p for p in report.write_report(recorded, tmp_path / "o") if "taps" in p.name]


def _lora(path, patch, rank, seed, accuracy, stored, learning_rate=0.0142, held=None):
  data = _run(path, patch, seed, accuracy, stored, stored, learning_rate=learning_rate)
  data["config"]["lora_rank"] = rank
  if held is not None:
    data["tasks"]["mnist5k"].update(validation_accuracy=held, validation_examples=800)
  return data


def test_lora_rows_get_the_budget_table_with_frontier_and_dashed_lines(tmp_path):
  runs = {
      "logits": _run("logits", "logits", 0, 0.60, 100, 100),
      "dw": _run("dw", "depthwise+logits", 0, 0.80, 700, 700),
      "r1": _lora("r1", "lora+logits", 1, 0, 0.70, 800),      # DW: fewer params, more accurate
      "r4": _lora("r4", "lora+logits", 4, 0, 0.85, 2400),
      "r16": _lora("r16", "lora+logits", 16, 0, 0.84, 9600),  # r4 beats it with fewer
      "sb-r4": _lora("sb-r4", "lora+scale_bias+logits", 4, 0, 0.90, 2800),
  }
  for name, data in runs.items():
    testing.write_run(tmp_path / name, data)
  grid = _grids(tmp_path)["lora_mobilenet_v2_mnist5k"]
  table = tables.build_table(grid)
  assert table.title == ("Accuracy vs task-specific parameters: LoRA beside the fixed patches "
                         "(mobilenet_v2 on mnist5k)")
  frontier = {row[0]: row[5] for row in table.md_rows}
  assert frontier == {
      "logits": "yes", "logits+depthwise": "yes", "logits+lora (lora_rank=1)": "",
      "logits+lora (lora_rank=4)": "yes", "logits+lora (lora_rank=16)": "",
      "logits+scale_bias+lora (lora_rank=4)": "yes"}
  assert "both rank-r factors" in table.caption
  assert "lora_alpha=lora_rank (lora runs only)" in table.caption
  (ax,) = plots.plot_grid(grid).axes
  (dashed,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
  np.testing.assert_allclose(dashed.get_xdata(), [800, 2400, 9600])   # one LoRA patch, 3 ranks
  assert len(ax.collections) >= 4   # the four frontier rows are ringed


def test_budget_table_takes_each_row_at_its_validation_selected_rate(tmp_path):
  for lr, acc, held in ((0.0045, 0.70, 0.60), (0.0142, 0.80, 0.90), (0.045, 0.95, 0.50)):
    testing.write_run(tmp_path / f"r4-{lr}", _lora(f"r4-{lr}", "lora+logits", 4, 0, acc, 2400,
                                                   learning_rate=lr, held=held))
  testing.write_run(tmp_path / "logits", _run("logits", "logits", 0, 0.60, 100, 100))
  table = tables.build_table(_grids(tmp_path)["lora_mobilenet_v2_mnist5k"])
  rows = {row[0]: row[1] for row in table.md_rows}
  # The best validation accuracy picks 0.0142 (test 80.0), not the best test accuracy (95.0).
  assert rows["logits+lora"] == "80.0 @lr=0.0142"
  assert "best mean validation accuracy" in table.caption


def test_write_report_reads_several_directories_as_one(taps_dir, tmp_path_factory):
  extra, out = tmp_path_factory.mktemp("extra"), tmp_path_factory.mktemp("out") / "both"
  testing.write_run(extra / "r4", _lora("r4", "lora+scale_bias+logits", 4, 0, 0.9, 2800))
  report.write_report([taps_dir, extra], out, ["md"])
  document = (out / "tables.md").read_text()
  assert "TAPS and LoRA beside the fixed patches" in document
  assert "| logits+scale_bias+lora | 90.0 | 2,800 |" in document   # one rank: in the caption
  with pytest.raises(ValueError, match="need an out_dir"):
    report.write_report([taps_dir, extra])
  testing.write_run(extra / "logits-s0", _run("logits-s0", "logits", 0, 0.6, 100, 100))
  with pytest.raises(ValueError, match="'logits-s0' is under both"):
    report.write_report([taps_dir, extra], out, ["md"])


def test_runs_flagged_by_the_training_alarm_are_marked_and_not_selected(tmp_path):
  alarm = {"reason": "runaway loss", "first_loss": 2.3, "last_loss": 600.0, "last_accuracy": 0.1}
  for seed in (0, 1):
    ok = _lora(f"ok{seed}", "lora+logits", 4, seed, 0.9, 2400, learning_rate=0.0142, held=0.9)
    bad = _lora(f"bad{seed}", "lora+logits", 4, seed, 0.1, 2400, learning_rate=0.045, held=0.1)
    bad["training_alarm"] = alarm
    testing.write_run(tmp_path / f"ok{seed}", ok)
    testing.write_run(tmp_path / f"bad{seed}", bad)
  by_id = _grids(tmp_path)
  sweep = tables.build_table(by_id["lr_sweep_mobilenet_v2_mnist5k"])
  ((label, at_0142, at_045),) = [row[:3] for row in sweep.md_rows]
  assert "training failed" not in at_0142
  assert at_045.startswith("10.0 ± 0.0 (n=2) (training failed: 2 of 2 runs)")
  (budget,) = tables.build_table(by_id["lora_mobilenet_v2_mnist5k"]).md_rows
  assert budget[1] == "90.0 ± 0.0 (n=2) @lr=0.0142"   # validation passed over the failed rate
  broken = _lora("x", "lora+logits", 4, 0, 0.1, 2400)
  broken["training_alarm"] = "runaway"
  testing.write_run(tmp_path / "x", broken)
  with pytest.raises(collect.ResultsFileError, match="'training_alarm' must be an object"):
    collect.collect_runs(tmp_path)
