"""The committed CPU-scale reproductions (results/cpu_scale*/) match their runs.

For each committed reproduction: regenerates the tables from its results.json
files and compares them with the committed tables.md and CSVs, and checks
that every row of its config has a finished run with that row's settings.

* `results/cpu_scale_32px_copy/`: the 32-px runs of 2026-12-01, made before
  `bn_init` existed (trained BN layers started from the base's values, as
  `bn_init=copy` does) with the config now named `cpu_scale_32px_copy`
  (their commands name it `cpu_scale`, its name then);
* `results/cpu_scale_taps/`: TAPS next to the fixed patches in that same
  32-px setting, run the same day (config `cpu_scale_taps`);
* `results/cpu_scale/`: the `cpu_scale` config (64 px, mnist5k and
  mnistm5k);
* `results/cpu_scale_lora/`: LoRA ranks and TAPS lambdas in `cpu_scale`'s
  setting on mnistm5k (config `cpu_scale_lora`); its tables also read
  `cpu_scale`'s runs, the fixed kinds it is compared with.
"""

import json
import pathlib

import pytest

from experiments import configs
from k4p1 import core
from k4p1 import report

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results"
# (results directory, config, the config's name in the runs' commands, the
# bn_init of rows that set none, the seeds every row must have run with).
REPRODUCTIONS = [("cpu_scale_32px_copy", "cpu_scale_32px_copy", "cpu_scale", "copy",
                  (0, 1, 2)),
                 ("cpu_scale_taps", "cpu_scale_taps", "cpu_scale_taps", "copy",
                  (0, 1, 2)),
                 ("cpu_scale", "cpu_scale", "cpu_scale", "preserve", (0, 1, 2)),
                 ("cpu_scale_lora", "cpu_scale_lora", "cpu_scale_lora", "preserve", (0, 1, 2))]
# Reproductions whose tables also read another's runs.
ALSO_READ = {"cpu_scale_lora": ("cpu_scale",)}


def _spec(text: str) -> str:
  """A patch spec in canonical order ("logits+scale_bias")."""
  return core.kinds.spec_string(core.kinds.parse(text))


def _committed_runs(runs_dir, config_name, required):
  """(row, seed) of every committed run; every row has the `required` seeds."""
  rows = {row["row_id"]: row for row in configs.load_rows(config_name)}
  found = []
  for path in sorted(runs_dir.glob("*-seed*/results.json")):
    row_id, seed = path.parent.name.rsplit("-seed", 1)
    assert row_id in rows, f"{path.parent.name} is not a row of {config_name}"
    assert int(seed) in configs.seeds(config_name)
    found.append((rows[row_id], int(seed)))
  have = {(row["row_id"], seed) for row, seed in found}
  missing = sorted({(r, s) for r in rows for s in required} - have)
  assert not missing, f"rows without their runs: {missing[:5]}"
  return found


@pytest.mark.parametrize("directory, config_name, command_name, bn_init, required",
                         REPRODUCTIONS)
def test_every_row_has_a_finished_run_with_its_settings(
    directory, config_name, command_name, bn_init, required):
  runs_dir = RESULTS / directory / "runs"
  assert configs.seeds(config_name) == (0, 1, 2)
  for row, seed in _committed_runs(runs_dir, config_name, required):
    run_dir = runs_dir / f"{row['row_id']}-seed{seed}"
    results = json.loads((run_dir / "results.json").read_text())
    config = results["config"]
    assert f"--config={command_name}@{row['row_id']}" in results["command"]
    assert config["seed"] == seed and f"--seed={seed}" in results["command"]
    # Defaults: no hand-set BN momentum; PreciseBN wherever BN trains.
    assert config["bn_momentum"] is None and config["precise_bn_batches"] == 200
    assert results["bn_statistics"]["method"] in ("precise_bn", "none")
    assert config["learning_rate"] == row["learning_rate"]
    assert config["train_steps"] == row["train_steps"] == results["steps"]
    assert config["image_size"] == row["image_size"]
    assert config["bn_stats"] == row.get("bn_stats", "task")
    # Runs from before bn_init existed started as "copy" does.
    assert config.get("bn_init", "copy") == row.get("bn_init", bn_init)
    assert config.get("validation_fraction") == row.get("validation_fraction")
    assert _spec(config["patch"]) == _spec(row["patch"])
    # Runs from before taps_lambda existed ran with TAPS's default.
    assert config.get("taps_lambda", core.defaults.TAPS_LAMBDA) == row.get(
        "taps_lambda", core.defaults.TAPS_LAMBDA)
    assert config.get("lora_rank", core.defaults.LORA_RANK) == row.get(
        "lora_rank", core.defaults.LORA_RANK)
    if configs.row_kind(row) == "multitask":
      assert config["tasks"] == list(row["tasks"])
    else:
      assert config["dataset"] == row["dataset"]


@pytest.mark.parametrize("directory", [r[0] for r in REPRODUCTIONS])
def test_committed_tables_are_what_make_tables_writes_from_the_runs(directory,
                                                                   tmp_path):
  dirs = [RESULTS / d / "runs" for d in (directory,) + ALSO_READ.get(directory, ())]
  written = report.write_report(dirs, tmp_path, ["md", "csv"])
  assert written
  for path in written:
    assert (RESULTS / directory / path.name).read_text() == path.read_text(), path.name
