"""The paper's numbers appear only where ../shared/PAPER.md gives them; "n/a" elsewhere."""

import pathlib
import re

import pytest

from helpers import report_testing as testing
from k4p1.report import collect
from k4p1.report import grids as grids_lib
from k4p1.report import paper
from k4p1.report import tables

PAPER_DATASETS = {"Flowers-102": "oxford_flowers102", "Stanford Cars": "cars196",
                  "FGVC Aircraft": "fgvc_aircraft"}
PAPER_ROWS = {"last layer only": frozenset({"logits"}),
              "S/B patch + last layer": frozenset({"scale_bias", "logits"})}


PUBLISHED = pathlib.Path(__file__).parent / "data" / "paper_published_numbers.md"
SECTION = "## Published numbers we can cite"


def _section(text: str) -> str:
  return text.split(SECTION)[1].split("\n## ")[0].strip()


def test_paper_numbers_match_paper_md():
  section = _section(PUBLISHED.read_text())
  notes = pathlib.Path(__file__).resolve().parents[2] / "shared" / "PAPER.md"
  if notes.is_file():  # The project's notes, where this checkout has them.
    assert _section(notes.read_text()) == section
  table = [line for line in section.splitlines() if line.startswith("|")]
  datasets = [cell.strip() for cell in table[0].strip("|").split("|")][1:]
  published = {}
  for line in table[2:]:
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    for dataset, value in zip(datasets, cells[1:]):
      published[("inception_v3", PAPER_DATASETS[dataset], PAPER_ROWS[cells[0]])] = float(value)
  assert len(published) == 6
  assert {key: number.accuracy_pct for key, number in paper.PAPER_TRANSFER.items()} == published
  assert "InceptionV3" in section and "TinyTL" in section


def test_every_paper_number_cites_its_source():
  for number in paper.PAPER_TRANSFER.values():
    assert "ICLR 2019" in number.source and "TinyTL" in number.source
    assert number.paper_row in PAPER_ROWS


@pytest.mark.parametrize("model, dataset, patch, expected", [
    ("inception_v3", "oxford_flowers102", "logits", 84.5),
    ("inception_v3", "cars196", "logits+scale_bias", 81.0),
    ("inception_v3", "fgvc_aircraft", "logits+scale_bias", 70.7),
    ("inception_v3", "fgvc_aircraft", "scale_bias+logits", 70.7),  # kind order is irrelevant
    ("inception_v3", "fgvc_aircraft", "logits+scale+bias", 70.7),  # = scale_bias
    ("inception_v3", "cars196:0-9", "logits", None),             # a label subset: another problem
    ("inception_v3", "cifar10", "logits", None),
    ("inception_v3", "cars196", "logits+bias", None),
    ("inception_v3", "cars196", "full", None),
    ("mobilenet_v2", "cars196", "logits", None),
])
def test_paper_transfer_accuracy(model, dataset, patch, expected):
  number = paper.paper_transfer_accuracy(model, dataset, collect.patch_kinds(patch))
  assert (number.accuracy_pct if number else None) == expected


def test_tables_show_paper_numbers_only_where_available(tmp_path):
  datasets = ["oxford_flowers102", "cars196", "fgvc_aircraft", "cifar10", "cars196:0-9"]
  patches = ["logits", "logits+bias", "logits+scale_bias", "logits+depthwise", "full"]
  for model in ("inception_v3", "mobilenet_v2"):
    for patch in patches:
      for dataset in datasets:
        testing.write_run(tmp_path / model / patch / dataset, model=model, patch=patch,
                          tasks={dataset: 0.5})
  by_id = {t.table_id: t for t in map(tables.build_table,
                                      grids_lib.build_grids(collect.collect_runs(tmp_path)))}
  assert sorted(by_id) == ["transfer_inception_v3", "transfer_mobilenet_v2"]
  expected_paper = {("logits", "oxford_flowers102"): "84.5", ("logits", "cars196"): "55.0",
                    ("logits", "fgvc_aircraft"): "45.9",
                    ("logits+scale_bias", "oxford_flowers102"): "90.4",
                    ("logits+scale_bias", "cars196"): "81.0",
                    ("logits+scale_bias", "fgvc_aircraft"): "70.7"}
  for table_id, table in by_id.items():
    header = table.md_header
    seen = {}
    for row in table.md_rows:
      for i, name in enumerate(header):
        if name.endswith(" (paper)"):
          seen[(row[0], name[:-len(" (paper)")])] = row[i]
    assert len(seen) == len(patches) * len(datasets)
    for key, value in seen.items():
      want = expected_paper.get(key, "n/a") if table_id == "transfer_inception_v3" else "n/a"
      assert value == want, (table_id, key)
    csv_paper = [v for row in table.csv_rows for h, v in zip(table.csv_header, row)
                 if h.endswith(" (paper)")]
    assert sorted(csv_paper) == sorted(seen.values())
  assert "TinyTL" in by_id["transfer_inception_v3"].caption
  assert "TinyTL" not in by_id["transfer_mobilenet_v2"].caption
  # No number in any table cell that is not ours (0.5 -> 50.0) or a published one.
  numbers = {v for t in by_id.values() for row in t.md_rows for v in row[1:]
             if re.fullmatch(r"[\d.]+", v)}
  assert numbers == {"50.0"} | set(expected_paper.values())
