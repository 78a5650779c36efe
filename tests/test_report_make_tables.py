"""End-to-end tests of `python -m experiments.make_tables` and `report.write_report`."""

import pathlib
import subprocess
import sys

import pytest

from helpers import report_testing as testing
from k4p1 import report

REPO = pathlib.Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _make_tables(*args):
  return subprocess.run([sys.executable, "-m", "experiments.make_tables", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def results_dir(tmp_path):
  runs = tmp_path / "runs"
  testing.write_run(runs / "inc/flowers/logits", model="inception_v3", patch="logits",
                    tasks={"oxford_flowers102": 0.8}, command="cmd a")
  testing.write_run(runs / "inc/flowers/sb", model="inception_v3",
                    tasks={"oxford_flowers102": 0.9}, command="cmd b")
  testing.write_run(runs / "inc/flowers/sb_lr", model="inception_v3", learning_rate=0.5,
                    tasks={"oxford_flowers102": 0.95}, command="cmd c")
  testing.write_run(runs / "mt", experiment="multitask", tasks={"a": 0.5, "b": 0.6},
                    system_params=1, separate_models_params=2)
  return runs


def test_entry_point_writes_tables_csvs_and_plots(results_dir, tmp_path):
  out = tmp_path / "report"
  result = _make_tables(f"--results_dir={results_dir}", f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  names = sorted(p.name for p in out.iterdir())
  assert names == sorted([
      "tables.md", "transfer_inception_v3.csv", "lr_sweep_inception_v3_oxford_flowers102.csv",
      "multitask_mobilenet_v2_a_b.csv", "transfer_inception_v3_params.png",
      "lr_sweep_inception_v3_oxford_flowers102_lr.png"])
  # The files hold exactly what the library renders from the same runs.
  runs = report.collect_runs(results_dir)
  tables = [report.build_table(g) for g in report.build_grids(runs)]
  assert (out / "tables.md").read_text() == report.render_document(tables, len(runs))
  for table in tables:
    assert (out / f"{table.table_id}.csv").read_text() == report.render_csv(table)
  for png in out.glob("*.png"):
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
  document = (out / "tables.md").read_text()
  assert "| logits | 80.0 | 84.5 |" in document
  assert "| logits+scale_bias | 90.0 | 90.4 |" in document   # the lr=0.5 run stays out
  assert "- `inc/flowers/sb_lr`: `cmd c`" in document        # ... and is in the sweep


def test_entry_point_default_out_dir_and_format(results_dir):
  result = _make_tables(f"--results_dir={results_dir}", "--format=csv")
  assert result.returncode == 0, result.stderr
  written = sorted(p.name for p in results_dir.iterdir() if p.is_file())
  assert written == sorted(["transfer_inception_v3.csv",
                            "lr_sweep_inception_v3_oxford_flowers102.csv",
                            "multitask_mobilenet_v2_a_b.csv"])


def test_entry_point_reads_comma_separated_directories_as_one(results_dir, tmp_path):
  more = tmp_path / "more"
  testing.write_run(more / "inc/flowers/full", model="inception_v3", patch="full",
                    tasks={"oxford_flowers102": 0.97}, command="cmd d")
  out = tmp_path / "report"
  result = _make_tables(f"--results_dir={results_dir},{more}", f"--out_dir={out}",
                        "--format=md")
  assert result.returncode == 0, result.stderr
  document = (out / "tables.md").read_text()
  assert "from 5 results.json file(s)" in document
  assert "| logits | 80.0 | 84.5 |" in document and "| full | 97.0 |" in document
  # Two directories and nowhere to write: refused before anything is written.
  result = _make_tables(f"--results_dir={results_dir},{more}", "--format=md")
  assert result.returncode != 0 and "need an out_dir" in result.stderr
  assert not (results_dir / "tables.md").exists()


def test_entry_point_names_a_malformed_file(results_dir, tmp_path):
  bad = results_dir / "broken" / "results.json"
  bad.parent.mkdir()
  bad.write_text('{"experiment": "transfer"')
  result = _make_tables(f"--results_dir={results_dir}", f"--out_dir={tmp_path / 'o'}")
  assert result.returncode != 0
  assert str(bad) in result.stderr
  assert not (tmp_path / "o" / "tables.md").exists()


def test_write_report_rejects_bad_input(results_dir, tmp_path):
  with pytest.raises(ValueError, match="unknown output format.*'pdf'.*md, csv, png"):
    report.write_report(results_dir, tmp_path / "o", ["md", "pdf"])
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="no results.json under"):
    report.write_report(empty)
  with pytest.raises(FileNotFoundError):
    report.write_report(tmp_path / "missing")


def test_write_report_overwrites_atomically(results_dir, tmp_path):
  out = tmp_path / "o"
  first = report.write_report(results_dir, out, ["md", "csv"])
  assert [p.name for p in first][0] == "tables.md"
  testing.write_run(results_dir / "inc/flowers/full", model="inception_v3", patch="full",
                    tasks={"oxford_flowers102": 0.97})
  second = report.write_report(results_dir, out, ["md", "csv"])
  assert [p.name for p in second] == [p.name for p in first]
  assert "| full | 97.0 | n/a |" in (out / "tables.md").read_text()
  assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no temp files left
