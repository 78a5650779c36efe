"""`tfds:NAME[/CONFIG][:labels]` datasets: any TFDS image classification dataset.

Under plain `tfds.testing.mock_data` (sizes: what the mock yields), and on
prepared metadata written into a temporary data_dir (splits and sizes from
the builder's DatasetInfo, no records).
"""

import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core import splits as splits_lib

from k4p1 import data
from k4p1 import train

NUM_EXAMPLES = 6


def write_metadata(data_dir, tfds_name: str, sizes: dict) -> None:
  """Metadata of a prepared `tfds_name` with splits of `sizes`, no records."""
  builder = tfds.builder(tfds_name, data_dir=str(data_dir), try_gcs=False)
  builder.info.set_splits(splits_lib.SplitDict([
      splits_lib.SplitInfo(
          name=split, shard_lengths=[size], num_bytes=0,
          filename_template=tfds.core.ShardedFileTemplate(
              data_dir=builder.data_path, dataset_name=builder.name,
              split=split, filetype_suffix="tfrecord"))
      for split, size in sizes.items()]))
  builder.data_path.mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_path)


def test_beans_under_mock_data_resolves_and_feeds_pipelines():
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    info = data.get_dataset_info("tfds:beans")
    assert info.name == "tfds:beans" and info.tfds_name == "beans"
    assert info.class_names == ("angular_leaf_spot", "bean_rust", "healthy")
    assert (info.image_key, info.label_key) == ("image", "label")
    assert (info.train_split, info.eval_split) == ("train", "test")
    assert info.num_train_examples == info.num_eval_examples == NUM_EXAMPLES
    assert data.default_image_size(info, "mobilenet_v2") == 224
    train_ds = data.build_dataset(info, info.train_split, global_batch_size=4,
                                  image_size=32, training=True, architecture="mobilenet_v2")
    images, labels = next(iter(train_ds))
    assert images.shape == (4, 32, 32, 3) and labels.dtype == tf.int32
    eval_ds = data.build_dataset("tfds:beans", "test", global_batch_size=4,
                                 image_size=32, training=False, architecture="mobilenet_v2")
    assert sum(int(y.shape[0]) for _, y in eval_ds) == NUM_EXAMPLES
    subset = data.get_dataset_info("tfds:beans:2,0")
    assert subset.num_classes == 2 and subset.label_subset == (2, 0)
    assert subset.class_names == ("healthy", "angular_leaf_spot")
    assert subset.num_train_examples is None  # Per-class counts unknown.
    assert subset.base_num_train_examples == NUM_EXAMPLES
    labels = np.concatenate([y.numpy() for _, y in data.build_dataset(
        subset, "test", global_batch_size=4, image_size=32, training=False, architecture="mobilenet_v2")])
    assert set(labels) <= {0, 1}


def test_keys_come_from_supervised_keys_or_are_given():
  with tfds.testing.mock_data(num_examples=2):
    # smallnorb: two images and five ClassLabels; supervised_keys pick one.
    info = data.get_dataset_info("tfds:smallnorb")
    assert (info.image_key, info.label_key) == ("image", "label_category")
    info = data.get_dataset_info("tfds:smallnorb", image_key="image2",
                                 label_key="instance")
    assert (info.image_key, info.label_key) == ("image2", "instance")
    assert info.num_classes == 10
    with pytest.raises(ValueError, match="label_key='angle' is not a ClassLabel"):
      data.get_dataset_info("tfds:coil100", label_key="angle")
    # dtd has no supervised_keys: its single Image and ClassLabel are used.
    info = data.get_dataset_info("tfds:dtd")
    assert (info.image_key, info.label_key) == ("image", "label")
    info = data.get_dataset_info("tfds:eurosat/rgb:0-4")
    assert info.tfds_name == "eurosat/rgb" and info.num_classes == 5


@pytest.mark.parametrize("name,patterns", [
    ("tfds:beanz", ["Unknown TFDS dataset 'beanz'", "close names", "'beans'"]),
    ("tfds:eurosat/bogus", ["Unknown config 'bogus'", "['all', 'rgb']"]),
    ("tfds:celeb_a", ["has no class label", "tfds.features.ClassLabel"]),
    ("tfds:imdb_reviews", ["has no image", "tfds.features.Image"]),
    ("tfds:beans:0-5", ["outside 0..2"]),
    ("tfds:", ["expected 'tfds:<name>[/<config>][:<labels>]'"]),
    ("tfds:eurosat/all", ["has no image"]),
])
def test_unusable_tfds_datasets_fail_clearly(name, patterns):
  with tfds.testing.mock_data(num_examples=1):
    with pytest.raises(ValueError) as raised:
      data.get_dataset_info(name)
  for pattern in patterns:
    assert pattern in str(raised.value), str(raised.value)


def test_splits_and_sizes_come_from_prepared_metadata(tmp_path):
  write_metadata(tmp_path, "beans", {"train": 30, "validation": 9})
  info = data.get_dataset_info("tfds:beans", data_dir=tmp_path, download=False)
  assert (info.train_split, info.eval_split) == ("train", "validation")
  assert (info.num_train_examples, info.num_eval_examples) == (30, 9)
  write_metadata(tmp_path / "both", "beans", {"train": 30, "validation": 9,
                                              "test": 7})
  info = data.get_dataset_info("tfds:beans", data_dir=tmp_path / "both")
  assert info.eval_split == "test" and info.num_eval_examples == 7
  write_metadata(tmp_path / "one", "beans", {"train": 30})
  with pytest.raises(ValueError, match=r"has splits \['train'\]; k4p1 needs"):
    data.get_dataset_info("tfds:beans", data_dir=tmp_path / "one")


def test_not_prepared_fails_fast_outside_mock_data(tmp_path):
  start = time.monotonic()
  with pytest.raises(data.DatasetNotPreparedError) as raised:
    data.get_dataset_info("tfds:beans", data_dir=tmp_path, download=False)
  assert time.monotonic() - start < 10
  assert f"tfds build beans --data_dir={tmp_path}" in str(raised.value)
  with pytest.raises(ValueError, match="label_key='x' applies to 'tfds:...'"):
    data.get_dataset_info("cifar10", label_key="x")


def test_run_config_resolves_tfds_and_folder_data_fields(tmp_path):
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    plan = train.resolve(train.RunConfig(
        workdir=str(tmp_path), dataset="tfds:smallnorb", label_key="instance"))
  task = plan.tasks[0]
  assert task.name == "tfds_smallnorb" and task.dataset.label_key == "instance"
  assert task.image_size == 224 and plan.config.eval_fraction is None
  with pytest.raises(ValueError, match="eval_fraction=0.3 applies to folder"):
    train.check_config(train.RunConfig(workdir=str(tmp_path),
                                       dataset="mnist5k", eval_fraction=0.3))
  with pytest.raises(ValueError, match="image_key='x' applies to tfds"):
    train.check_config(train.RunConfig(workdir=str(tmp_path),
                                       dataset="mnist5k", image_key="x"))
  with pytest.raises(ValueError, match=r"eval_fraction must be in \(0, 1\)"):
    train.check_config(train.RunConfig(workdir=str(tmp_path),
                                       dataset="mnist5k", eval_fraction=1.5))
