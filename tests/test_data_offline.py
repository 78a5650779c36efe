"""Tests of the offline datasets (mnist5k, digits) on the real files."""

import gzip

import numpy as np
import pytest
import tensorflow as tf

from k4p1 import data
from k4p1.data import offline


def test_packaged_mnist5k_has_5000_images_500_per_class():
  images, labels = offline.load_mnist5k()
  assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
  assert labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
  assert images.max() == 255 and images.min() == 0


def test_digits_has_1797_images():
  images, labels = offline.load_digits()
  assert images.shape == (1797, 8, 8, 1) and images.dtype == np.uint8
  assert images.max() == 255
  assert len(np.unique(labels)) == 10


def test_shared_copy_is_read_through_data_dir(shared_data):
  assert offline.mnist5k_path(shared_data) == shared_data / offline.MNIST5K_FILENAME
  shared_images, shared_labels = offline.load_mnist5k(offline.mnist5k_path(shared_data))
  images, labels = offline.load_mnist5k()
  np.testing.assert_array_equal(shared_images, images)
  np.testing.assert_array_equal(shared_labels, labels)


def test_a_malformed_csv_is_rejected(tmp_path):
  path = tmp_path / "bad.csv.gz"
  with gzip.open(path, "wt") as f:
    f.write("1,2,3\n4,5,6\n")
  with pytest.raises(ValueError, match="785"):
    offline.load_mnist5k(path)
  with pytest.raises(ValueError, match="does not exist"):
    offline.load_mnist5k(tmp_path / "missing.csv.gz")


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_splits_match_the_registry_and_partition_the_data(name):
  info = data.get_dataset_info(name)
  train = offline.load_split(name, "train")
  test = offline.load_split(name, "test")
  assert len(train.labels) == info.num_train_examples
  assert len(test.labels) == info.num_eval_examples
  np.testing.assert_array_equal(np.bincount(train.labels), info.train_examples_per_class)
  np.testing.assert_array_equal(np.bincount(test.labels), info.eval_examples_per_class)
  all_labels = (offline.load_mnist5k() if name == "mnist5k" else offline.load_digits())[1]
  train_idx, eval_idx = offline.holdout_indices(all_labels)
  assert not set(train_idx) & set(eval_idx)
  assert len(train_idx) + len(eval_idx) == len(all_labels) == (
      {"mnist5k": 5000, "digits": 1797}[name])


def test_splits_are_deterministic_by_seed():
  a = offline.load_split("digits", "test", split_seed=3)
  b = offline.load_split("digits", "test", split_seed=3)
  c = offline.load_split("digits", "test", split_seed=4)
  np.testing.assert_array_equal(a.images, b.images)
  np.testing.assert_array_equal(a.labels, b.labels)
  assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("name", ["mnist5k:0-4", "mnist5k:5-9", "digits:0-4",
                                  "digits:5-9"])
def test_label_subsets_are_balanced_and_renumbered(name):
  info = data.get_dataset_info(name)
  base, _ = name.split(":")
  for split, per_class in (("train", info.train_examples_per_class),
                           ("test", info.eval_examples_per_class)):
    subset = offline.load_split(base, split, info.label_subset)
    np.testing.assert_array_equal(np.bincount(subset.labels, minlength=5), per_class)
    full = offline.load_split(base, split)
    for new_label, old_label in enumerate(info.label_subset):
      np.testing.assert_array_equal(subset.images[subset.labels == new_label],
                                    full.images[full.labels == old_label])
  if base == "mnist5k":
    assert info.train_examples_per_class == (400,) * 5


def test_eval_pipeline_makes_one_pass_and_keeps_the_last_batch():
  ds = data.build_dataset("mnist5k:0-4", "test", global_batch_size=64,
                          image_size=32, training=False, architecture="mobilenet_v2")
  sizes, labels = [], []
  for images, batch_labels in ds:
    assert images.shape[1:] == (32, 32, 3) and images.dtype == tf.float32
    assert batch_labels.dtype == tf.int32
    assert -1.0 <= float(tf.reduce_min(images)) <= float(tf.reduce_max(images)) <= 1.0
    sizes.append(int(images.shape[0]))
    labels.append(batch_labels.numpy())
  assert sum(sizes) == 500 and sizes[-1] == 500 % 64
  np.testing.assert_array_equal(np.bincount(np.concatenate(labels)), [100] * 5)


def test_train_pipeline_is_infinite_seeded_and_drops_remainder():
  def first_batches(seed):
    ds = data.build_dataset("digits:5-9", "train", global_batch_size=32,
                            image_size=24, training=True, seed=seed, architecture="mobilenet_v2")
    assert ds.cardinality() == tf.data.INFINITE_CARDINALITY
    return [(x.numpy(), y.numpy()) for x, y in ds.take(3)]

  a, b, c = first_batches(0), first_batches(0), first_batches(1)
  for (xa, ya), (xb, yb) in zip(a, b):
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
  assert not np.array_equal(a[0][0], c[0][0])
  for x, y in a:
    assert x.shape == (32, 24, 24, 3)
    assert y.min() >= 0 and y.max() <= 4


def test_two_replica_strategy_gets_per_replica_batches():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  ds = data.build_dataset("mnist5k:5-9", "train", global_batch_size=8,
                          image_size=32, training=True, strategy=strategy,
                          architecture="resnet50")
  images, labels = next(iter(ds))
  per_replica = strategy.experimental_local_results(images)
  assert len(per_replica) == 2
  for replica_images, replica_labels in zip(
      per_replica, strategy.experimental_local_results(labels)):
    assert replica_images.shape == (4, 32, 32, 3)
    assert replica_labels.shape == (4,)
  with pytest.raises(ValueError, match="divisible"):
    data.build_dataset("mnist5k", "train", global_batch_size=7, image_size=32,
                       training=True, strategy=strategy, architecture="mobilenet_v2")


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="split"):
    data.build_dataset("mnist5k", "validation", 8, 32, training=False, architecture="mobilenet_v2")
  with pytest.raises(ValueError, match="global_batch_size"):
    data.build_dataset("mnist5k", "train", 0, 32, training=True, architecture="mobilenet_v2")
  with pytest.raises(ValueError, match="architecture"):
    data.build_dataset("mnist5k", "train", 8, 32, training=True,
                       architecture="vgg16")
