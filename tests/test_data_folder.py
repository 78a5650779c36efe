"""`folder:DIR` datasets on generated trees of small images.

Every class's images have one colour (with a little noise), so a decoded
image tells which class folder it came from.
"""

import json
import pathlib

from absl import flags
from absl.testing import flagsaver
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from experiments import config_flags
from experiments import run as entry
from k4p1 import data
from k4p1.data import folder
from k4p1.data import image_files
from k4p1.train import checks

# Sorted class names -> labels 0, 1, 2; each class in its own colour.
COLOURS = {"ant": (200, 30, 30), "bee": (30, 200, 30), "cow": (30, 30, 200)}
FORMATS = ("grey.png", "rgb.png", "rgba.png", "rgb.jpg", "rgb.bmp", "anim.gif")


def write_image(path: pathlib.Path, colour, kind: str, size=(12, 16)) -> None:
  """A small image of `colour` in format/mode `kind` (one of FORMATS)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
  pixels = np.clip(np.array(colour) + rng.integers(-5, 6, size + (3,)),
                   0, 255).astype(np.uint8)
  image = Image.fromarray(pixels)
  if kind.startswith("grey"):
    image = image.convert("L")
  elif kind.startswith("rgba"):
    image = image.convert("RGBA")
  if kind == "anim.gif":  # The second frame is another colour: not read.
    other = Image.fromarray(255 - pixels)
    image.save(path, save_all=True, append_images=[other])
  else:
    image.save(path)


def make_tree(root: pathlib.Path, counts: dict, kinds=("rgb.png",)) -> None:
  for name, count in counts.items():
    for i in range(count):
      kind = kinds[i % len(kinds)]
      write_image(root / name / f"img{i}.{kind.split('.')[1]}", COLOURS[name],
                  kind)


def looks_like(image, colour) -> bool:
  """Whether `image` is `colour`, or its grey level in three equal channels."""
  mean = image.reshape(-1, 3).mean(axis=0)
  grey = np.dot(colour, (0.299, 0.587, 0.114))
  return bool(np.all(np.abs(mean - colour) < 12) or
              np.all(np.abs(mean - grey) < 12))


def decoded(info, split, **kwargs):
  ds, count = image_files.examples(info, split, seed=0, split_seed=0,
                                   repeat=False, shuffle=False, **kwargs)
  images, labels = zip(*[(x.numpy(), int(y)) for x, y in ds])
  assert len(labels) == count
  return images, labels


def test_holdout_split_counts_classes_and_every_format_decodes_to_rgb(tmp_path):
  root = tmp_path / "zoo"
  make_tree(root, {"cow": 6, "ant": 10, "bee": 5}, FORMATS)
  info = data.get_dataset_info(f"folder:{root}")
  assert info.name == f"folder:{root}" and info.source == "folder"
  assert info.class_names == ("ant", "bee", "cow") and info.num_classes == 3
  # round(0.2 * n) of each class held out: 2 of 10, 1 of 5, 1 of 6.
  assert info.eval_examples_per_class == (2, 1, 1)
  assert info.train_examples_per_class == (8, 4, 5)
  assert (info.num_train_examples, info.num_eval_examples) == (17, 4)
  assert info.eval_fraction == 0.2 and info.train_split == "train"
  assert data.default_image_size(info, "mobilenet_v2") == 224
  assert data.default_image_size(info, "inception_v3") == 299
  for split in ("train", "test"):
    images, labels = decoded(info, split)
    for image, label in zip(images, labels):
      assert image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8
      assert looks_like(image, COLOURS[info.class_names[label]])
    assert np.bincount(labels, minlength=3).tolist() == list(
        info.train_examples_per_class if split == "train"
        else info.eval_examples_per_class)


def test_holdout_is_seeded_stratified_and_deterministic(tmp_path):
  make_tree(tmp_path, {"ant": 20, "bee": 10})
  info = data.get_dataset_info(f"folder:{tmp_path}", eval_fraction=0.3)
  assert info.eval_examples_per_class == (6, 3) and info.eval_fraction == 0.3
  train, _ = folder.split_files(info, "train")
  test, test_labels = folder.split_files(info, "test")
  again, _ = folder.split_files(data.get_dataset_info(f"folder:{tmp_path}",
                                                      eval_fraction=0.3), "test")
  np.testing.assert_array_equal(test, again)
  assert not set(train) & set(test) and len(set(train) | set(test)) == 30
  assert np.bincount(test_labels).tolist() == [6, 3]
  other, _ = folder.split_files(info, "test", split_seed=1)
  assert set(other) != set(test)


def test_train_and_test_folders_are_the_split(tmp_path):
  make_tree(tmp_path / "train", {"bee": 4, "ant": 3})
  make_tree(tmp_path / "test", {"bee": 2, "ant": 1})
  info = data.get_dataset_info(f"folder:{tmp_path}", eval_fraction=0.5)
  assert info.eval_fraction is None  # The folders decide; the fraction is unused.
  assert info.train_examples_per_class == (3, 4)
  assert info.eval_examples_per_class == (1, 2)
  _, labels = decoded(info, "test")
  assert sorted(labels) == [0, 1, 1]
  paths, _ = folder.split_files(info, "test")
  assert all("/test/" in p for p in paths)


def test_pipelines_shard_and_train_under_two_replicas(tmp_path):
  make_tree(tmp_path / "a:b", {"ant": 7, "bee": 6, "cow": 5})
  name = f"folder:{tmp_path / 'a:b'}"  # A colon in the path is part of it.
  info = data.get_dataset_info(name)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  train = data.build_dataset(name, "train", global_batch_size=4, image_size=32,
                             training=True, strategy=strategy, architecture="mobilenet_v2")
  images, labels = next(iter(train))
  for replica in strategy.experimental_local_results(images):
    assert replica.shape == (2, 32, 32, 3) and replica.dtype == tf.float32
  evaluation = data.build_dataset(info, "test", global_batch_size=4,
                                  image_size=32, training=False,
                                  strategy=strategy, architecture="mobilenet_v2")
  seen = [int(y) for _, labels in evaluation
          for part in strategy.experimental_local_results(labels) for y in part]
  assert sorted(seen) == sorted(decoded(info, "test")[1])
  # Two input pipelines read disjoint halves of the files.
  shards = [folder.split_files(info, "train")[0][i::2] for i in (0, 1)]
  for i, shard in enumerate(shards):
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=i)
    _, labels = decoded(info, "train", input_context=context)
    assert len(labels) == len(shard)
  assert sum(len(s) for s in shards) == info.num_train_examples


def test_training_order_is_seeded_and_reshuffled_every_epoch(tmp_path):
  make_tree(tmp_path, {"ant": 6, "bee": 6})
  info = data.get_dataset_info(f"folder:{tmp_path}", eval_fraction=0.5)

  def labels(seed):
    ds, _ = image_files.examples(info, "train", seed=seed, split_seed=0,
                                 repeat=True, shuffle=True)
    return [int(y) for _, y in ds.take(24)]

  first = labels(seed=3)
  assert first == labels(seed=3)
  assert first[:6] != first[6:12] or first[6:12] != first[12:18]
  assert sorted(first[:6]) == [0, 0, 0, 1, 1, 1]  # Each epoch: every file once.


def expect_error(name, *patterns, **kwargs):
  with pytest.raises(ValueError) as raised:
    data.get_dataset_info(name, **kwargs)
  message = str(raised.value)
  for pattern in patterns:
    assert pattern in message, message
  return message


def test_missing_empty_and_single_class_folders_fail_clearly(tmp_path):
  expect_error(f"folder:{tmp_path / 'nope'}", "does not exist",
               str(tmp_path / "nope"))
  make_tree(tmp_path / "zoo", {"ant": 2, "bee": 2})
  expect_error(f"folder:{tmp_path / 'zoo'}:0-1", "no label subset", "':0-1'")
  (tmp_path / "file.txt").write_text("x")
  expect_error(f"folder:{tmp_path / 'file.txt'}", "is not a directory")
  (tmp_path / "empty").mkdir()
  expect_error(f"folder:{tmp_path / 'empty'}", "has no class subfolders")
  write_image(tmp_path / "flat" / "a.png", COLOURS["ant"], "rgb.png")
  expect_error(f"folder:{tmp_path / 'flat'}", "has no class subfolders")
  make_tree(tmp_path / "one", {"ant": 3})
  expect_error(f"folder:{tmp_path / 'one'}", "single class", "'ant'")
  make_tree(tmp_path / "hollow", {"ant": 3})
  (tmp_path / "hollow" / "bee" / ".hidden").mkdir(parents=True)
  expect_error(f"folder:{tmp_path / 'hollow'}", "hold no image files",
               str(tmp_path / "hollow" / "bee"))
  expect_error("folder:", "Empty folder dataset name")


def test_non_image_and_corrupt_files_are_named(tmp_path):
  make_tree(tmp_path, {"ant": 2, "bee": 2})
  (tmp_path / "ant" / "notes.txt").write_text("not an image")
  (tmp_path / "bee" / "fake.png").write_bytes(b"GARBAGE" * 10)
  (tmp_path / "bee" / "empty.jpg").write_bytes(b"")
  bilevel = tmp_path / "bee" / "bilevel.bmp"
  Image.fromarray(np.zeros((4, 4), np.uint8)).convert("1").save(bilevel)
  (tmp_path / "ant" / ".DS_Store").write_bytes(b"\0")  # Hidden: skipped.
  (tmp_path / "README").write_text("top-level files are skipped")
  message = expect_error(
      f"folder:{tmp_path}", "4 file(s) that are not readable images",
      f"{tmp_path / 'ant' / 'notes.txt'}: not an image file (extension '.txt'",
      f"{tmp_path / 'bee' / 'fake.png'}: not a JPEG, PNG, BMP or GIF image",
      f"{tmp_path / 'bee' / 'empty.jpg'}: empty file",
      f"{bilevel}: a 1-bit BMP")
  assert ".DS_Store" not in message


def test_a_corrupt_body_fails_in_the_pipeline_naming_the_file(tmp_path):
  make_tree(tmp_path, {"ant": 3, "bee": 3})
  broken = tmp_path / "bee" / "img9.jpg"
  broken.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 64)  # A JPEG header only.
  info = data.get_dataset_info(f"folder:{tmp_path}", eval_fraction=0.5)
  for split in ("train", "test"):
    if str(broken) in folder.split_files(info, split)[0]:
      ds = data.build_dataset(info, split, global_batch_size=2, image_size=32,
                              training=False, architecture="mobilenet_v2")
      with pytest.raises(tf.errors.InvalidArgumentError,
                         match=f"Cannot decode image file.*{broken}"):
        list(ds)


def test_split_layout_problems_fail_clearly(tmp_path):
  make_tree(tmp_path / "a" / "train", {"ant": 2, "bee": 2})
  make_tree(tmp_path / "a" / "test", {"ant": 1, "cow": 1})
  expect_error(f"folder:{tmp_path / 'a'}", "same class folders",
               "only in train/: ['bee']", "only in test/: ['cow']")
  make_tree(tmp_path / "b" / "train", {"ant": 2, "bee": 2})
  expect_error(f"folder:{tmp_path / 'b'}", "but no test/ folder")
  make_tree(tmp_path / "c" / "train", {"ant": 2, "bee": 2})
  make_tree(tmp_path / "c" / "test", {"ant": 1, "bee": 1})
  make_tree(tmp_path / "c" / "val", {"ant": 1, "bee": 1})
  expect_error(f"folder:{tmp_path / 'c'}", "and also ['val']")


def test_bad_eval_fractions_and_misplaced_keywords_fail_clearly(tmp_path):
  make_tree(tmp_path, {"ant": 1, "bee": 4})
  name = f"folder:{tmp_path}"
  for bad in (0.0, 1.0, -0.1, True, "0.2"):
    expect_error(name, "eval_fraction must be a number in (0, 1)", repr(bad),
                 eval_fraction=bad)
  expect_error(name, "holds out every image of class(es) ['ant']",
               eval_fraction=0.6)
  expect_error(name, "holds out no image", eval_fraction=0.05)
  expect_error("cifar10", "eval_fraction=0.3 applies to 'folder:...'",
               eval_fraction=0.3)
  expect_error(name, "image_key='img' applies to 'tfds:...'", image_key="img")


def test_default_task_names_of_folder_and_tfds_datasets():
  assert checks.default_task_name("folder:/data/my photos") == "folder_my_photos"
  assert checks.default_task_name("folder:/x/a:b/") == "folder_a_b"
  assert checks.default_task_name("tfds:eurosat/rgb:0-4") == "tfds_eurosat_rgb_0-4"


def test_command_line_tasks_keep_colons_in_folder_paths():
  flag_values = flags.FlagValues()
  config_flags.define_flags(flag_values)
  flag_values(["multitask", "--workdir=/tmp/x", "--eval_fraction=0.3",
               "--tasks=folder:/data/a:b,mnist5k:0-4"])
  config = config_flags.build_config(flag_values)
  assert config.tasks == ("folder:/data/a:b", "mnist5k:0-4")
  assert config.eval_fraction == 0.3


TINY_RUN = dict(model="mobilenet_v2", weights="none", alpha=0.35,
                batch_size=4, train_steps=2, eval_every=0, checkpoint_every=0,
                summary_every=1, precise_bn_batches=1)


@pytest.mark.usefixtures("parsed_flags")
def test_transfer_runs_on_a_folder_dataset(tmp_path):
  root = tmp_path / "my zoo"
  make_tree(root, {"ant": 5, "bee": 5, "cow": 5}, FORMATS)
  workdir = tmp_path / "run"
  with flagsaver.flagsaver(workdir=str(workdir), dataset=f"folder:{root}",
                           image_size=32, eval_fraction=0.4, **TINY_RUN):
    entry.run_from_flags(["run"])
  results = json.loads((workdir / "results.json").read_text())
  task = results["tasks"]["folder_my_zoo"]
  assert task["num_classes"] == 3 and task["examples"] == 6  # 2 per class.
  assert results["steps"] == 2
  config = json.loads((workdir / "config.json").read_text())["config"]
  assert config["eval_fraction"] == 0.4
  assert config["dataset"] == f"folder:{root}"


@pytest.mark.slow
@pytest.mark.usefixtures("parsed_flags")
def test_multitask_runs_a_folder_task_next_to_a_tfds_task(tmp_path):
  root = tmp_path / "zoo"
  make_tree(root / "train", {"ant": 3, "bee": 3})
  make_tree(root / "test", {"ant": 2, "bee": 1})
  workdir = tmp_path / "run"
  # TFDS's own testing idiom, as a user would write it: fake cifar10 records.
  with tfds.testing.mock_data(num_examples=8), flagsaver.flagsaver(
      workdir=str(workdir), tasks=[f"folder:{root}", "tfds:cifar10"],
      image_sizes=["32", "32"], patch="scale_bias+logits", **TINY_RUN):
    entry.run_from_flags(["run"])
  results = json.loads((workdir / "results.json").read_text())
  assert set(results["tasks"]) == {"folder_zoo", "tfds_cifar10"}
  assert results["tasks"]["folder_zoo"]["num_classes"] == 2
  assert results["tasks"]["folder_zoo"]["examples"] == 3
  assert results["tasks"]["tfds_cifar10"]["num_classes"] == 10
  assert results["tasks"]["tfds_cifar10"]["examples"] == 8
  assert results["task_steps"] == {"folder_zoo": 2, "tfds_cifar10": 2}
  config = json.loads((workdir / "config.json").read_text())["config"]
  assert config["eval_fraction"] is None  # The folder has its own split.
