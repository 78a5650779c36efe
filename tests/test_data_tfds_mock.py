"""Pipelines of every TFDS registry dataset, on `tfds.testing.mock_data` as is.

TFDS's testing idiom, plain: no data_dir, no metadata written. k4p1 sees the
mock (`data.tfds_mocked()`) and skips its "not prepared" check; sizes come
from the registry, records from the mock.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from k4p1 import data

TFDS_DATASETS = ("imagenet2012", "cifar10", "cifar100", "cars196",
                 "oxford_flowers102", "places365_small", "fgvc_aircraft")
NUM_EXAMPLES = 7
IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def strategy():
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.mark.parametrize("name", TFDS_DATASETS)
def test_mock_pipelines_under_a_two_replica_strategy(name, strategy):
  info = data.get_dataset_info(name)
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    assert data.tfds_mocked()
    train = data.build_dataset(name, info.train_split, global_batch_size=4,
                               image_size=IMAGE_SIZE, training=True,
                               strategy=strategy, architecture="mobilenet_v2")
    evaluation = data.build_dataset(name, info.eval_split, global_batch_size=4,
                                    image_size=IMAGE_SIZE, training=False,
                                    strategy=strategy, architecture="mobilenet_v2")
    train_iter = iter(train)
    for _ in range(3):  # More steps than examples: training repeats.
      images, labels = next(train_iter)
      for replica_images, replica_labels in zip(
          strategy.experimental_local_results(images),
          strategy.experimental_local_results(labels)):
        assert replica_images.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3)
        assert replica_images.dtype == tf.float32
        assert replica_labels.shape == (2,) and replica_labels.dtype == tf.int32
        values = replica_images.numpy()
        assert values.min() >= -1.0 and values.max() <= 1.0
        assert values.max() > values.min()  # Real pixels, not a constant.
        assert np.all((replica_labels.numpy() >= 0) &
                      (replica_labels.numpy() < info.num_classes))
    seen = 0
    for images, labels in evaluation:  # One pass, last partial batch kept.
      for replica_labels in strategy.experimental_local_results(labels):
        seen += int(replica_labels.shape[0])
    assert seen == NUM_EXAMPLES * len(info.eval_split.split("+"))


@pytest.mark.parametrize("architecture,low,high", [
    ("resnet50", -123.68, 255.0 - 103.939),
    ("efficientnet_b0", 0.0, 255.0),
])
def test_value_range_follows_the_architecture(architecture, low, high):
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    ds = data.build_dataset("cifar10", "test", global_batch_size=NUM_EXAMPLES,
                            image_size=IMAGE_SIZE, training=False,
                            architecture=architecture)
    images, _ = next(iter(ds))
  values = images.numpy()
  assert values.min() >= low - 1e-3 and values.max() <= high + 1e-3
  assert values.max() - values.min() > 100  # Not scaled to [-1, 1].


def test_label_subset_of_a_tfds_dataset_filters_and_renumbers():
  with tfds.testing.mock_data(num_examples=40):
    # The pipeline decodes the image and the label only; the mock draws its
    # records from the features decoded, so the raw read asks for the same.
    raw = tfds.builder("cifar10").as_dataset(
        split="test",
        decoders=tfds.decode.PartialDecoding({"image": True, "label": True}))
    raw_labels = np.array([int(ex["label"]) for ex in raw])
    ds = data.build_dataset("cifar10:7,3,5", "test", global_batch_size=8,
                            image_size=IMAGE_SIZE, training=False, architecture="mobilenet_v2")
    labels = np.concatenate([y.numpy() for _, y in ds])
  order = {7: 0, 3: 1, 5: 2}
  expected = [order[label] for label in raw_labels if label in order]
  assert expected  # The mock draws labels uniformly: some are in the subset.
  np.testing.assert_array_equal(labels, expected)


def test_the_mock_is_detected_only_inside_mock_data(tmp_path):
  assert not data.tfds_mocked()
  with tfds.testing.mock_data(num_examples=2):
    assert data.tfds_mocked()
    # Nothing is prepared in tmp_path, yet the builder comes back unchecked.
    builder = data.prepared_builder(data.get_dataset_info("cars196"),
                                    data_dir=tmp_path, download=False)
    assert builder.name == "cars196"
  assert not data.tfds_mocked()
  with pytest.raises(data.DatasetNotPreparedError):
    data.prepared_builder(data.get_dataset_info("cars196"), data_dir=tmp_path,
                          download=False)
