"""Tests of the dataset registry (k4p1.data.registry)."""

import pytest
import tensorflow_datasets as tfds

from k4p1 import data
from k4p1.data import registry

PAPER_DATASETS = ("imagenet2012", "cifar10", "cifar100", "cars196",
                  "oxford_flowers102", "places365_small", "fgvc_aircraft")


def test_registry_holds_the_papers_datasets_and_offline_ones():
  assert set(data.DATASETS) == set(PAPER_DATASETS) | {"mnist5k", "mnistm5k",
                                                       "digits"}


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_tfds_entries_agree_with_the_tfds_builders(name):
  info = data.get_dataset_info(name)
  builder = tfds.builder(info.tfds_name, try_gcs=False)  # Code only, no data.
  features = builder.info.features
  assert features[info.label_key].num_classes == info.num_classes
  assert info.image_key in features
  assert info.num_train_examples > 0 and info.num_eval_examples > 0
  assert info.eval_split not in info.train_split.split("+")


def test_image_sizes_follow_the_paper():
  assert data.get_dataset_info("cifar10").image_size == 224
  assert data.get_dataset_info("places365_small").image_size == 256
  assert data.default_image_size("cifar10", "inception_v3") == 299
  assert data.default_image_size("fgvc_aircraft", "mobilenet_v2") == 224
  assert data.default_image_size("places365_small", "inception_v3") == 256
  assert data.default_image_size("mnist5k", "inception_v3") == (
      data.get_dataset_info("mnist5k").image_size)


def test_manual_downloads_and_quirks():
  manual = {name for name, info in data.DATASETS.items() if info.manual_download}
  assert manual == {"imagenet2012", "cars196"}
  assert "ILSVRC2012_img_train.tar" in data.DATASETS["imagenet2012"].manual_files
  assert "cars_train.tgz" in data.DATASETS["cars196"].manual_files
  # The quirk the pipeline works around: a 3-tuple supervised view.
  places = tfds.builder("places365_small", try_gcs=False)
  assert places.info.supervised_keys == ("image", "label", "filename")
  assert "filename" in data.DATASETS["places365_small"].notes


def test_split_names():
  assert data.split_names("oxford_flowers102") == ("train+validation", "test")
  assert data.split_names("imagenet2012") == ("train", "validation")
  assert data.split_names("mnist5k:0-4") == ("train", "test")


@pytest.mark.parametrize("spec,expected", [
    ("0-4", (0, 1, 2, 3, 4)),
    ("5-9", (5, 6, 7, 8, 9)),
    ("0,2,4", (0, 2, 4)),
    ("7,3", (7, 3)),
    ("0-1,8", (0, 1, 8)),
])
def test_label_subsets_parse(spec, expected):
  assert registry.parse_label_subset(spec, 10) == expected


@pytest.mark.parametrize("spec", ["9-3", "0-10", "a", "1,1", "", "3-"])
def test_bad_label_subsets_raise(spec):
  with pytest.raises(ValueError, match="subset"):
    registry.parse_label_subset(spec, 10)


def test_subset_info_counts_and_classes():
  info = data.get_dataset_info("mnist5k:5-9")
  assert info.name == "mnist5k:5-9" and info.base_name == "mnist5k"
  assert info.num_classes == 5 and info.label_subset == (5, 6, 7, 8, 9)
  assert info.num_train_examples == 5 * 400
  assert info.num_eval_examples == 5 * 100
  digits = data.get_dataset_info("digits:0,9")
  assert digits.train_examples_per_class == (
      data.DATASETS["digits"].train_examples_per_class[0],
      data.DATASETS["digits"].train_examples_per_class[9])
  assert data.get_dataset_info("cifar10:0-4").num_train_examples == 25_000
  # Per-class counts of Flowers' train+validation are not registered.
  assert data.get_dataset_info("oxford_flowers102:0-4").num_train_examples is None


def test_unknown_names_raise_with_the_choices():
  with pytest.raises(ValueError, match="cifar10"):
    data.get_dataset_info("cifar11")
  with pytest.raises(ValueError, match="outside"):
    data.get_dataset_info("mnist5k:3-12")
  with pytest.raises(ValueError, match="mobilenet_v2"):
    data.default_image_size("cifar10", "vgg16")
