"""`validation_fraction`: a validation split carved out of the training split.

The split (k4p1/data/validation.py) on offline, folder and TFDS datasets; the
end-of-run evaluation's validation accuracy (a tiny mnist5k transfer run);
and the report's learning rate selected on it (synthetic results.json files).
"""

import collections
import json

from absl.testing import flagsaver
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from experiments import run as entry
from helpers import report_testing as testing
from helpers.summaries import event_tags
from k4p1 import data
from k4p1 import train
from k4p1.data import folder
from k4p1.data import offline
from k4p1.data import validation
from k4p1.report import collect
from k4p1.report import grids as grids_lib
from k4p1.report import tables
from k4p1.train import evaluation
from k4p1.train import optimizers


def _images_and_labels(info, split, **kwargs):
  """Every (image bytes, label) of an eval pipeline over `split`, in order."""
  ds = data.build_dataset(info, split, global_batch_size=500, image_size=28,
                          training=False, **kwargs, architecture="mobilenet_v2")
  pairs = []
  for images, labels in ds:
    pairs += [(image.tobytes(), int(label))
              for image, label in zip(images.numpy(), labels.numpy())]
  return pairs


def test_offline_split_partitions_the_training_split_per_class():
  plain = data.get_dataset_info("mnist5k")
  info = data.get_dataset_info("mnist5k", validation_fraction=0.2)
  assert (info.train_split, info.validation_split) == ("train", "validation")
  assert info.validation_fraction == 0.2 and info.eval_split == "test"
  assert info.num_train_examples == 3200 and info.num_validation_examples == 800
  assert info.train_examples_per_class == (320,) * 10
  assert info.validation_examples_per_class == (80,) * 10
  assert train.plan.train_examples(info) == 3200  # Sizes epochs and schedules.
  train_pairs = _images_and_labels(info, "train")
  held_pairs = _images_and_labels(info, "validation")
  assert len(train_pairs) == 3200 and len(held_pairs) == 800
  # Stratified: 80 of each class's 400 training examples.
  assert collections.Counter(label for _, label in held_pairs) == {c: 80 for c in range(10)}
  # Together exactly the original training split; the test split untouched.
  assert (collections.Counter(train_pairs) + collections.Counter(held_pairs)
          == collections.Counter(_images_and_labels(plain, "train")))
  assert _images_and_labels(info, "test") == _images_and_labels(plain, "test")


def test_offline_split_is_disjoint_from_train_and_test_by_index():
  _, labels = offline.load_mnist5k()
  train_idx, test_idx = offline.holdout_indices(labels, offline.EVAL_FRACTION, seed=0)
  info = data.get_dataset_info("mnist5k", validation_fraction=0.3)
  kept = train_idx[validation.carve(info, "train", labels[train_idx])]
  held = train_idx[validation.carve(info, "validation", labels[train_idx])]
  assert not set(held) & set(kept) and not set(held) & set(test_idx)
  assert sorted(np.concatenate([kept, held])) == sorted(train_idx)
  assert validation.carve(info, "test", labels[test_idx]) is None


def test_the_split_is_seeded():
  labels = np.repeat(np.arange(4), 50)
  first = validation.validation_indices(labels, 0.2, seed=0)
  again = validation.validation_indices(labels, 0.2, seed=0)
  other = validation.validation_indices(labels, 0.2, seed=1)
  assert all(np.array_equal(a, b) for a, b in zip(first, again))
  assert not np.array_equal(first[1], other[1])
  assert len(other[1]) == len(first[1]) == 40
  # Independent of the train/test holdout's draw with the same seed.
  assert not np.array_equal(first[1], offline.holdout_indices(labels, 0.2, seed=0)[1])
  info = data.get_dataset_info("mnist5k:3-4", validation_fraction=0.2)
  seeded = [_images_and_labels(info, "validation", split_seed=s) for s in (0, 0, 1)]
  assert seeded[0] == seeded[1] and seeded[0] != seeded[2]


def test_a_class_is_held_out_alike_whatever_the_label_subset():
  whole = data.get_dataset_info("mnist5k", validation_fraction=0.2)
  subset = data.get_dataset_info("mnist5k:7,5", validation_fraction=0.2)
  assert subset.num_train_examples == 640 and subset.validation_examples_per_class == (80, 80)
  held_whole = {image for image, label in _images_and_labels(whole, "validation")
                if label == 5}
  held_subset = {image for image, label in _images_and_labels(subset, "validation")
                 if label == 1}  # Original label 5, renumbered 1.
  assert held_whole == held_subset


def _write_tree(root, per_class):
  for index, (name, count) in enumerate(per_class.items()):
    for i in range(count):
      path = root / name / f"{i}.png"
      path.parent.mkdir(parents=True, exist_ok=True)
      pixels = np.full((8, 8, 3), 20 * index + i, np.uint8)
      Image.fromarray(pixels).save(path)


def test_folder_split_is_stratified_and_exact(tmp_path):
  _write_tree(tmp_path, {"ant": 10, "bee": 15, "cow": 20})
  plain = data.get_dataset_info(f"folder:{tmp_path}")
  info = data.get_dataset_info(f"folder:{tmp_path}", validation_fraction=0.25)
  assert plain.train_examples_per_class == (8, 12, 16)
  assert info.validation_examples_per_class == (2, 3, 4)
  assert info.train_examples_per_class == (6, 9, 12)
  kept_paths, kept_labels = folder.split_files(info, "train")
  held_paths, held_labels = folder.split_files(info, "validation")
  test_paths, _ = folder.split_files(info, "test")
  assert np.bincount(held_labels).tolist() == [2, 3, 4]
  assert np.bincount(kept_labels).tolist() == [6, 9, 12]
  assert not set(held_paths) & set(kept_paths) and not set(held_paths) & set(test_paths)
  assert set(held_paths) | set(kept_paths) == set(folder.split_files(plain, "train")[0])
  again, _ = folder.split_files(info, "validation")
  assert list(again) == list(held_paths)
  ds = data.build_dataset(info, "validation", global_batch_size=4, image_size=32,
                          training=False, architecture="mobilenet_v2")
  assert sum(int(labels.shape[0]) for _, labels in ds) == 9


def test_tfds_split_slices_the_training_split():
  cifar = data.get_dataset_info("cifar10", validation_fraction=0.2)
  assert (cifar.train_split, cifar.validation_split) == ("train[:80%]", "train[80%:]")
  assert (cifar.num_train_examples, cifar.num_validation_examples) == (40_000, 10_000)
  assert cifar.train_examples_per_class is None  # Slices are not stratified.
  flowers = data.get_dataset_info("oxford_flowers102", validation_fraction=0.1)
  assert flowers.train_split == "train[:90%]+validation[:90%]"
  assert flowers.validation_split == "train[90%:]+validation[90%:]"
  subset = data.get_dataset_info("cifar10:0-4", validation_fraction=0.2)
  assert subset.num_train_examples is None  # Estimated from the whole split:
  assert train.plan.train_examples(subset) == 20_000
  with tfds.testing.mock_data(num_examples=6):
    for name in ("cifar10", "tfds:beans"):
      info = data.get_dataset_info(name, validation_fraction=0.5)
      assert info.validation_split == "train[50%:]"
      ds = data.build_dataset(info, info.validation_split, global_batch_size=2,
                              image_size=32, training=False, architecture="mobilenet_v2")
      assert next(iter(ds))[0].shape == (2, 32, 32, 3)


@pytest.mark.parametrize("value", [0.0, 1.0, -0.2, 1.5, True])
def test_bad_fractions_fail_at_resolve_naming_the_value(value, tmp_path):
  config = train.RunConfig(workdir=str(tmp_path / "w"), dataset="mnist5k",
                           weights=None, validation_fraction=value)
  with pytest.raises(ValueError, match=rf"validation_fraction must be in \(0, 1\).*got {value!r}"):
    train.resolve(config)
  assert not (tmp_path / "w").exists()


def test_a_fraction_that_starves_a_class_fails(tmp_path):
  with pytest.raises(ValueError, match="leaving none to train on"):
    data.get_dataset_info("digits", validation_fraction=0.999)
  with pytest.raises(ValueError, match="holds out no example"):
    _write_tree(tmp_path, {"a": 2, "b": 2})
    data.get_dataset_info(f"folder:{tmp_path}", eval_fraction=0.5,
                          validation_fraction=0.2)


def test_default_runs_have_no_validation_split(tmp_path):
  plan = train.resolve(train.RunConfig(workdir=str(tmp_path), dataset="mnist5k",
                                       weights=None))
  assert plan.config.validation_fraction is None
  assert plan.tasks[0].dataset == data.get_dataset_info("mnist5k")
  assert plan.tasks[0].dataset.validation_split is None
  assert "validation_fraction" in train.config.IDENTITY_FIELDS


def test_k_task_metrics_name_each_task_and_the_mean():
  per_task = {"a": {"accuracy": 0.5, "examples": 4, "validation_accuracy": 0.25,
                    "validation_examples": 8},
              "b": {"accuracy": 0.5, "examples": 4, "validation_accuracy": 0.75,
                    "validation_examples": 6}}
  assert evaluation._validation_metrics(per_task) == {  # pylint: disable=protected-access
      "eval/validation/a/accuracy": 0.25, "eval/validation/a/examples": 8,
      "eval/validation/b/accuracy": 0.75, "eval/validation/b/examples": 6,
      "eval/validation/accuracy": 0.5}
  no_split = {"a": {"accuracy": 1.0}}
  assert evaluation._validation_metrics(no_split) == {}  # pylint: disable=protected-access


@pytest.mark.usefixtures("parsed_flags")
def test_transfer_run_reports_validation_accuracy(tmp_path):
  """A tiny mnist5k run through the entry point, --validation_fraction=0.2."""
  workdir = tmp_path / "run"
  with flagsaver.flagsaver(
      workdir=str(workdir), model="mobilenet_v2", weights="none", alpha=0.35,
      image_size=32, dataset="mnist5k:0-2", patch="scale_bias+logits",
      batch_size=32, train_steps=2, eval_every=1, checkpoint_every=0,
      summary_every=1, precise_bn_batches=200, validation_fraction=0.2):
    entry.run_from_flags(["run"])
  results = json.loads((workdir / "results.json").read_text())
  task = results["tasks"]["mnist5k_0-2"]
  assert task["examples"] == 300  # The test split, unchanged.
  assert task["validation_examples"] == 240  # 80 of each class's 400.
  assert 0.0 <= task["validation_accuracy"] <= 1.0
  assert results["config"]["validation_fraction"] == 0.2
  # Training and PreciseBN read the 960 remaining training examples.
  assert results["steps_per_epoch"] == optimizers.steps_per_epoch(960, 32) == 30
  assert results["bn_statistics"]["batches"] == 30
  assert {"eval/accuracy", "eval/validation/accuracy"} <= event_tags(
      str(workdir / "tensorboard"))
  periodic = results["eval_history"][0]  # The eval at step 1 has it too.
  assert periodic["validation_examples"] == 240
  assert 0.0 <= periodic["eval/validation/accuracy"] <= 1.0


def _tables(results_dir):
  runs = collect.collect_runs(results_dir)
  return {t.table_id: t for t in map(tables.build_table, grids_lib.build_grids(runs))}


def _run(root, name, lr, test, held, seed=0, patch="logits+scale_bias"):
  data_ = testing.results_dict(patch=patch, learning_rate=lr, tasks={"mnist5k": test},
                               config={"validation_fraction": 0.2, "seed": seed},
                               command=f"cmd {name}")
  data_["tasks"]["mnist5k"].update(validation_accuracy=held, validation_examples=800)
  testing.write_run(root / name, data_)


def test_report_selects_each_row_rate_on_validation(tmp_path):
  # S/B: validation prefers 0.142 (test prefers 0.045); logits: 0.045.
  _run(tmp_path, "sb_lr0.045_s0", 0.045, test=0.90, held=0.60)
  _run(tmp_path, "sb_lr0.045_s1", 0.045, test=0.92, held=0.62, seed=1)
  _run(tmp_path, "sb_lr0.142_s0", 0.142, test=0.80, held=0.70)
  _run(tmp_path, "sb_lr0.142_s1", 0.142, test=0.82, held=0.72, seed=1)
  _run(tmp_path, "lg_lr0.045", 0.045, test=0.50, held=0.55, patch="logits")
  _run(tmp_path, "lg_lr0.142", 0.142, test=0.70, held=0.45, patch="logits")
  found = _tables(tmp_path)
  grid = [g for g in grids_lib.build_grids(collect.collect_runs(tmp_path))
          if g.kind == "transfer"][0]
  cells = {row.patch: cell for (row, _), cell in grid.cells.items()}
  assert cells["logits+scale_bias"].learning_rate == 0.142
  assert cells["logits+scale_bias"].accuracies == (0.80, 0.82)
  assert cells["logits"].learning_rate == 0.045 and cells["logits"].accuracies == (0.50,)
  table = found["transfer_mobilenet_v2"]
  rows = {row[0]: row for row in table.md_rows}
  assert rows["logits+scale_bias"][1] == "81.0 ± 1.4 (n=2) @lr=0.142"
  assert rows["logits"][1] == "50.0 @lr=0.045"
  assert ("Learning rate: per row and dataset, the rate with the best mean validation "
          "accuracy over its runs (validation_fraction=0.2 of each training split, held "
          "out of training); cells show test accuracy at that rate; @lr=... gives it."
          ) in table.caption
  assert "validation_fraction=0.2" in table.caption  # A shared setting, too.
  assert table.csv_header[-1] == "mnist5k validation accuracy %"
  by_patch = {row[0]: row for row in table.csv_rows}
  assert by_patch["logits+scale_bias"][-1] == "71.0"
  sweep = found["lr_sweep_mobilenet_v2_mnist5k"]
  sweep_rows = {row[0]: row for row in sweep.md_rows}
  assert sweep_rows["logits+scale_bias"][1:3] == ["91.0 ± 1.4 (n=2) (val 61.0)",
                                                 "81.0 ± 1.4 (n=2) (val 71.0; selected)"]
  assert sweep_rows["logits"][1:3] == ["50.0 (val 55.0; selected)", "70.0 (val 45.0)"]
  assert "\"selected\": each row's rate with the best one" in sweep.caption


def test_report_without_validation_keeps_the_nearest_rate_rule(tmp_path):
  testing.write_run(tmp_path / "a", learning_rate=0.045, tasks={"mnist5k": 0.9})
  testing.write_run(tmp_path / "b", learning_rate=0.142, tasks={"mnist5k": 0.8})
  table = _tables(tmp_path)["transfer_mobilenet_v2"]
  assert table.md_rows[0][1] == "90.0"
  assert ("Learning rate: 0.045; a cell with no run at it shows its runs at the nearest "
          "rate (@lr=...).") in table.caption
  assert "validation" not in table.caption + "".join(table.csv_header)


def test_rows_with_and_without_validation_are_told_apart(tmp_path):
  testing.write_run(tmp_path / "plain", learning_rate=0.045, tasks={"mnist5k": 0.9})
  _run(tmp_path, "held_lr0.045", 0.045, test=0.85, held=0.5)
  _run(tmp_path, "held_lr0.45", 0.45, test=0.75, held=0.6)
  table = _tables(tmp_path)["transfer_mobilenet_v2"]
  rows = {row[0]: row[1] for row in table.md_rows}
  assert rows == {"logits+scale_bias (validation_fraction=0.2)": "75.0 @lr=0.45",
                  "logits+scale_bias (validation_fraction=null)": "90.0"}
  assert ("Learning rate: 0.045; a cell with no run at it shows its runs at the nearest "
          "rate (@lr=...). Cells whose runs recorded validation accuracies instead take "
          "the rate with the best mean validation accuracy") in table.caption


def test_bad_validation_accuracy_is_rejected(tmp_path):
  data_ = testing.results_dict()
  data_["tasks"]["cifar10"]["validation_accuracy"] = 71.0
  path = testing.write_run(tmp_path / "a", data_)
  with pytest.raises(collect.ResultsFileError, match="validation_accuracy"):
    collect.load_run(path)
