"""The committed CPU-scale reproduction (results/cpu_scale/) matches its runs.

Regenerates the tables from the committed results.json files and compares
them with the committed tables.md and CSVs, and checks that every row of the
`cpu_scale` config has a finished run with that row's settings.
"""

import json
import pathlib

import pytest

from experiments import configs
from k4p1 import report

ROOT = pathlib.Path(__file__).resolve().parents[1] / "results" / "cpu_scale"
RUNS = ROOT / "runs"

pytestmark = pytest.mark.skipif(not (ROOT / "tables.md").exists(),
                                reason="results/cpu_scale not generated")


def test_every_cpu_scale_row_has_a_finished_run_with_its_settings():
  seeds = configs.seeds("cpu_scale")
  assert seeds == (0, 1, 2)
  runs = [(row, seed) for row in configs.load_rows("cpu_scale") for seed in seeds]
  for row, seed in runs:
    run_dir = RUNS / f"{row['row_id']}-seed{seed}"
    results = json.loads((run_dir / "results.json").read_text())
    config = results["config"]
    assert f"--config=cpu_scale@{row['row_id']}" in results["command"]
    assert config["seed"] == seed and f"--seed={seed}" in results["command"]
    # Defaults: no hand-set BN momentum; PreciseBN wherever BN trains.
    assert config["bn_momentum"] is None and config["precise_bn_batches"] == 200
    assert results["bn_statistics"]["method"] in ("precise_bn", "none")
    assert config["learning_rate"] == row["learning_rate"]
    assert config["train_steps"] == row["train_steps"] == results["steps"]
    assert config["image_size"] == row["image_size"]
    assert config["bn_stats"] == row.get("bn_stats", "task")
    if row["entry"] == "multitask":
      assert config["tasks"] == list(row["tasks"])
    else:
      assert config["dataset"] == row["dataset"]


def test_committed_tables_are_what_make_tables_writes_from_the_runs(tmp_path):
  written = report.write_report(RUNS, tmp_path, ["md", "csv"])
  assert written
  for path in written:
    assert (ROOT / path.name).read_text() == path.read_text(), path.name
