"""Tests for k4p1.report grids and tables: known results.json in, exact Markdown/CSV out."""

import pytest

from helpers import report_testing as testing
from k4p1.report import collect
from k4p1.report import grids as grids_lib
from k4p1.report import tables

CAPTION_PAPER = ("Paper numbers: Mudrakarta et al., \"K for the Price of 1\", ICLR 2019 "
                 "(arXiv 1810.10703); InceptionV3, 299 px, top-1 %, quoted by TinyTL "
                 "(Cai et al., NeurIPS 2020), Table 3.")
SETTINGS_INCEPTION = ("Settings of every run: model=inception_v3, image_size=299, "
                      "weights=imagenet, bn_stats=task, bn_init=copy.")
SWEEP_PAPER = ("The paper shows this sweep in Appendix B.2 (Figure 9: with small patches, "
               "accuracy grows with the learning rate, unlike full fine-tuning); its numbers "
               "are not available here: n/a.")
PCT = ("Trained params: the patch's trainable parameters (`params.patch_trainable`, logits "
       "layer included); % of model: trained params / `params.total`, every weight of one "
       "task's model = the base feature extractor (BN moving statistics included) + that "
       "task's logits layer.")
SYSTEM_CAPTION = ("System params: the whole system's parameters (shared base + every task's "
                  "patch); separate models params: K independently fine-tuned models "
                  "(`system_params`, `separate_models_params`). The paper's numbers for this "
                  "experiment are not available here: n/a.")


def _tables_by_id(results_dir):
  runs = collect.collect_runs(results_dir)
  return {t.table_id: t for t in map(tables.build_table, grids_lib.build_grids(runs))}


@pytest.fixture
def transfer_dir(tmp_path):
  """InceptionV3 transfer runs: two seeds in one cell, and off-default learning rates."""
  run = lambda path, **kw: testing.write_run(tmp_path / path, model="inception_v3",
                                             image_size=299, total=10_000, **kw)
  run("inc/flowers/logits", patch="logits", tasks={"oxford_flowers102": 0.8},
      patch_trainable=100, command="cmd a")
  run("inc/flowers/sb_s0", tasks={"oxford_flowers102": 0.9}, patch_trainable=250,
      command="cmd b")
  run("inc/flowers/sb_s1", tasks={"oxford_flowers102": 0.92}, patch_trainable=250,
      command="cmd c")
  run("inc/flowers/sb_lr0.5", tasks={"oxford_flowers102": 0.5}, patch_trainable=250,
      learning_rate=0.5, command="cmd d")
  run("inc/cifar10/full", patch="full", tasks={"cifar10": 0.95}, patch_trainable=9000,
      command="cmd e")
  run("inc/cifar10/logits_lr0.1", patch="logits", tasks={"cifar10": 0.7}, patch_trainable=100,
      learning_rate=0.1, command="cmd f")
  return tmp_path


def test_transfer_table_markdown_exact(transfer_dir):
  table = _tables_by_id(transfer_dir)["transfer_inception_v3"]
  expected = f"""\
## Transfer learning: inception_v3

Top-1 accuracy (%) after training each patch on each dataset. {SETTINGS_INCEPTION} \
Learning rate: 0.045; a cell with no run at it shows its runs at the nearest rate (@lr=...). \
{CAPTION_PAPER} {PCT}

| patch | cifar10 | cifar10 (paper) | cifar10 trained params (% of model) | oxford_flowers102 \
| oxford_flowers102 (paper) | oxford_flowers102 trained params (% of model) |
|---|---|---|---|---|---|---|
| logits | 70.0 @lr=0.1 | n/a | 100 (1%) | 80.0 | 84.5 | 100 (1%) |
| logits+scale_bias | — | n/a | — | 91.0 ± 1.4 (n=2) | 90.4 | 250 (2.5%) |
| full | 95.0 | n/a | 9,000 (90%) | — | n/a | — |

CSV: `transfer_inception_v3.csv`. Sources (workdir: command):

- `inc/cifar10/full`: `cmd e`
- `inc/cifar10/logits_lr0.1`: `cmd f`
- `inc/flowers/logits`: `cmd a`
- `inc/flowers/sb_s0`: `cmd b`
- `inc/flowers/sb_s1`: `cmd c`
"""
  assert tables.render_markdown(table) == expected


def test_transfer_table_csv_exact(transfer_dir):
  table = _tables_by_id(transfer_dir)["transfer_inception_v3"]
  columns = ["accuracy %", "std", "n", "learning rate", "(paper)", "trained params",
             "% of model", "workdirs"]
  header = ",".join(["patch", "settings"] + [f"{ds} {c}" for ds in ("cifar10", "oxford_flowers102")
                                             for c in columns])
  expected = "\n".join([
      header,
      "logits,,70.0,,1,0.1,n/a,100,1.0,inc/cifar10/logits_lr0.1,"
      "80.0,,1,0.045,84.5,100,1.0,inc/flowers/logits",
      "logits+scale_bias,,,,,,n/a,,,,"
      "91.0,1.4142,2,0.045,90.4,250,2.5,inc/flowers/sb_s0;inc/flowers/sb_s1",
      "full,,95.0,,1,0.045,n/a,9000,90.0,inc/cifar10/full,,,,,n/a,,,",
  ]) + "\n"
  assert tables.render_csv(table) == expected


def test_learning_rate_sweep_table_exact(transfer_dir):
  by_id = _tables_by_id(transfer_dir)
  assert sorted(by_id) == ["lr_sweep_inception_v3_cifar10",
                           "lr_sweep_inception_v3_oxford_flowers102", "transfer_inception_v3"]
  expected = f"""\
## Learning-rate sweep: inception_v3 on oxford_flowers102

Top-1 accuracy (%) on oxford_flowers102 at each learning rate. {SETTINGS_INCEPTION} {SWEEP_PAPER} {PCT}

| patch | lr=0.045 | lr=0.5 | trained params (% of model) |
|---|---|---|---|
| logits | 80.0 | — | 100 (1%) |
| logits+scale_bias | 91.0 ± 1.4 (n=2) | 50.0 | 250 (2.5%) |

CSV: `lr_sweep_inception_v3_oxford_flowers102.csv`. Sources (workdir: command):

- `inc/flowers/logits`: `cmd a`
- `inc/flowers/sb_lr0.5`: `cmd d`
- `inc/flowers/sb_s0`: `cmd b`
- `inc/flowers/sb_s1`: `cmd c`
"""
  assert tables.render_markdown(by_id["lr_sweep_inception_v3_oxford_flowers102"]) == expected
  csv_lines = tables.render_csv(by_id["lr_sweep_inception_v3_oxford_flowers102"]).splitlines()
  assert csv_lines[1:] == [
      "logits,,80.0,,1,0.045,100,1.0,inc/flowers/logits,,,,,,,",
      "logits+scale_bias,,91.0,1.4142,2,0.045,250,2.5,inc/flowers/sb_s0;inc/flowers/sb_s1,"
      "50.0,,1,0.5,250,2.5,inc/flowers/sb_lr0.5"]


def test_multitask_table_exact(tmp_path):
  run = lambda path, **kw: testing.write_run(
      tmp_path / path, experiment="multitask", image_size=64, total=10_000,
      separate_models_params=20_000, **kw)
  run("mt/sb", tasks={"mnist5k:0-4": 0.97, "mnist5k:5-9": 0.95}, patch_trainable=400,
      system_params=12_000, command="cmd m1")
  run("mt/sb_seed1", tasks={"mnist5k:0-4": 0.95, "mnist5k:5-9": 0.93}, patch_trainable=400,
      system_params=12_000, command="cmd m2")
  run("mt/full", patch="full", tasks={"mnist5k:0-4": 0.99, "mnist5k:5-9": 0.98},
      patch_trainable=9000, system_params=10_100, command="cmd m3")
  (table,) = _tables_by_id(tmp_path).values()
  expected = f"""\
## Multi-task learning: mobilenet_v2 (2 tasks: mnist5k:0-4, mnist5k:5-9)

Top-1 accuracy (%) of each task. Settings of every run: model=mobilenet_v2, weights=imagenet, \
bn_stats=task, bn_init=copy, learning_rate=0.045, image_size=64. {SYSTEM_CAPTION} {PCT}

| patch | mnist5k:0-4 | mnist5k:5-9 | trained params (% of model) | system params \
| separate models params | system / separate |
|---|---|---|---|---|---|---|
| logits+scale_bias | 96.0 ± 1.4 (n=2) | 94.0 ± 1.4 (n=2) | 400 (4%) | 12,000 | 20,000 | 60% |
| full | 99.0 | 98.0 | 9,000 (90%) | 10,100 | 20,000 | 50.5% |

CSV: `multitask_mobilenet_v2_mnist5k_0-4_mnist5k_5-9.csv`. Sources (workdir: command):

- `mt/full`: `cmd m3`
- `mt/sb`: `cmd m1`
- `mt/sb_seed1`: `cmd m2`
"""
  assert tables.render_markdown(table) == expected
  assert tables.render_csv(table).splitlines()[2] == (
      "full,,99.0,,1,0.045,9000,90.0,mt/full,98.0,,1,0.045,9000,90.0,mt/full,9000,10100,20000,50.5")


def test_multires_table_exact(tmp_path):
  testing.write_run(
      tmp_path / "mr/sb", experiment="multires", image_size=96, patch_trainable=300,
      tasks={"mnist5k@128": 0.95, "mnist5k@64": 0.9, "mnist5k@96": 0.94}, system_params=11_000,
      separate_models_params=30_000, config={"resolutions": [64, 96, 128]}, command="cmd r")
  (table,) = _tables_by_id(tmp_path).values()
  expected = f"""\
## Multi-resolution: mobilenet_v2 on mnist5k

Top-1 accuracy (%) of one model on mnist5k at each input resolution, one patch per resolution \
(task keys "<dataset>@<pixels>"). Settings of every run: model=mobilenet_v2, weights=imagenet, \
bn_stats=task, bn_init=copy, learning_rate=0.045. {SYSTEM_CAPTION} {PCT}

| patch | 64px | 96px | 128px | trained params (% of model) | system params \
| separate models params | system / separate |
|---|---|---|---|---|---|---|---|
| logits+scale_bias | 90.0 | 94.0 | 95.0 | 300 (3%) | 11,000 | 30,000 | 36.7% |

CSV: `multires_mobilenet_v2_mnist5k.csv`. Sources (workdir: command):

- `mr/sb`: `cmd r`
"""
  assert tables.render_markdown(table) == expected


def test_multires_task_without_resolution_uses_the_run_image_size():
  assert grids_lib.parse_resolution_task("mnist5k@96", 32) == ("mnist5k", 96)
  assert grids_lib.parse_resolution_task("mnist5k:0-4@64", 32) == ("mnist5k:0-4", 64)
  assert grids_lib.parse_resolution_task("mnist5k", 32) == ("mnist5k", 32)
  assert grids_lib.parse_resolution_task("odd@name", 32) == ("odd@name", 32)


def test_ssd_runs_get_their_own_table(tmp_path):
  testing.write_run(tmp_path / "ssd", tasks={"imagenet2012": 0.6}, command="cmd ssd",
                    config={"weights": "ssd_tf1:/ckpt/model.ckpt"})
  testing.write_run(tmp_path / "ssd2", patch="logits", tasks={"imagenet2012": 0.3},
                    config={"weights": "ssd_tf2:/ckpt2"})
  testing.write_run(tmp_path / "plain", tasks={"imagenet2012": 0.7}, command="cmd plain")
  by_id = _tables_by_id(tmp_path)
  assert sorted(by_id) == ["ssd_to_imagenet_mobilenet_v2", "transfer_mobilenet_v2"]
  ssd = by_id["ssd_to_imagenet_mobilenet_v2"]
  assert ssd.title == "SSD feature extractor -> ImageNet classifier (mobilenet_v2; paper claim 1)"
  assert [w for w, _ in ssd.sources] == ["ssd", "ssd2"]
  assert [row[:3] for row in ssd.md_rows] == [
      ["logits (weights=ssd_tf2:/ckpt2)", "30.0", "n/a"],
      ["logits+scale_bias (weights=ssd_tf1:/ckpt/model.ckpt)", "60.0", "n/a"]]
  assert [w for w, _ in by_id["transfer_mobilenet_v2"].sources] == ["plain"]
  assert "ssd" not in tables.render_markdown(by_id["transfer_mobilenet_v2"])


def test_rows_follow_the_paper_order_unknown_kinds_last(tmp_path):
  # Spellings as a user might write them; labels are str(PatchSpec)'s canonical form.
  patches = ["full", "scale+logits", "depthwise+logits", "bias+depthwise+logits", "logits",
             "scale_bias+depthwise+logits", "bias+logits", "scale_bias+logits",
             "logits+full"]
  for i, patch in enumerate(patches):
    testing.write_run(tmp_path / f"r{i}", patch=patch, tasks={"cifar10": 0.1 * (i + 1)})
  (grid,) = grids_lib.build_grids(collect.collect_runs(tmp_path))
  assert [row.label for row in grid.rows] == [
      "logits", "logits+bias", "logits+scale_bias", "logits+depthwise",
      "logits+scale_bias+depthwise", "full", "logits+bias+depthwise", "logits+scale"]
  # "full" and "logits+full" are one patch: one cell, two runs (0.1 and 0.9).
  full_cell = grid.cells[(grid.rows[5], grid.columns[0])]
  assert full_cell.n == 2 and full_cell.mean_pct == pytest.approx(50.0)


def test_differing_settings_split_rows_shared_ones_go_to_the_caption(tmp_path):
  testing.write_run(tmp_path / "a", tasks={"cifar10": 0.9}, config={"bn_stats": "task"})
  testing.write_run(tmp_path / "b", tasks={"cifar10": 0.8}, config={"bn_stats": "frozen"})
  testing.write_run(tmp_path / "c", tasks={"cifar10": 0.7}, config={"bn_stats": "frozen",
                                                                     "seed": 3})
  (table,) = _tables_by_id(tmp_path).values()
  assert [row[:2] for row in table.md_rows] == [
      ["logits+scale_bias (bn_stats=frozen)", "75.0 ± 7.1 (n=2)"],
      ["logits+scale_bias (bn_stats=task)", "90.0"]]
  # results.json without bn_init ran before it existed: as bn_init=copy.
  assert ("Settings of every run: model=mobilenet_v2, image_size=224, weights=imagenet, "
          "bn_init=copy.") in (
      table.caption)
  assert "Rows also differ in: bn_stats." in table.caption
  assert table.csv_rows[0][:3] == ["logits+scale_bias", "bn_stats=frozen", "75.0"]


def test_one_dataset_at_two_image_sizes_gets_two_columns(tmp_path):
  testing.write_run(tmp_path / "a", tasks={"cifar10": 0.9}, image_size=224)
  testing.write_run(tmp_path / "b", tasks={"cifar10": 0.6}, image_size=96)
  testing.write_run(tmp_path / "c", tasks={"cifar100": 0.5}, image_size=224)
  (grid,) = grids_lib.build_grids(collect.collect_runs(tmp_path))
  assert [grid.column_labels[c] for c in grid.columns] == [
      "cifar10 @96px", "cifar10 @224px", "cifar100"]


@pytest.mark.parametrize("learning_rates, expected", [
    ([0.1, 0.1, 0.01], 0.1),       # the most used
    ([0.01, 0.1], 0.1),            # tie: nearer 0.045 on a log scale
    ([0.03, 0.1], 0.03),
    ([None, None, 0.3], None),
])
def test_main_learning_rate(learning_rates, expected):
  assert grids_lib.main_learning_rate(learning_rates) == expected


def test_cell_statistics():
  run = collect.parse_results(testing.results_dict(patch_trainable=50, total=200), None, "w")
  cell = grids_lib.Cell((0.5, 0.7, 0.6), (run, run, run))
  assert cell.n == 3
  assert cell.mean_pct == pytest.approx(60.0)
  assert cell.std_pct == pytest.approx(10.0)
  assert cell.trained_params == (50,)
  assert cell.pct_of_model == (25.0,)
  assert grids_lib.Cell((0.5,), (run,)).std_pct is None
  assert tables.format_accuracy(cell) == "60.0 ± 10.0 (n=3)"


def test_document_has_legend_and_every_table(transfer_dir):
  runs = collect.collect_runs(transfer_dir)
  built = [tables.build_table(g) for g in grids_lib.build_grids(runs)]
  document = tables.render_document(built, len(runs))
  assert document.startswith("# k4p1 results\n\nGenerated by `python -m experiments.make_tables` "
                             "from 6 results.json file(s); 3 table(s).\n")
  assert tables.LEGEND in document
  # Transfer tables first, then their sweeps.
  assert [line for line in document.splitlines() if line.startswith("## ")] == [
      "## Transfer learning: inception_v3",
      "## Learning-rate sweep: inception_v3 on cifar10",
      "## Learning-rate sweep: inception_v3 on oxford_flowers102"]


def test_markdown_escapes_pipes_and_backticks():
  table = tables.Table("t", "T", "c", ["a|b"], [["x|y"]], ["a"], [["x"]],
                       [("w", "echo `date` | cat"), ("v", "")])
  text = tables.render_markdown(table)
  assert "| a\\|b |" in text and "| x\\|y |" in text
  assert "- `w`: `` echo `date` | cat ``" in text
  assert "- `v`: (no command recorded)" in text
