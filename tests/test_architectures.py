"""The architecture table: one source of truth that every other table agrees with."""

import numpy as np
import pytest

from k4p1 import architectures
from k4p1 import data
from k4p1 import models
from k4p1.models import checkpoint_names


@pytest.mark.parametrize("name", architectures.NAMES)
def test_facts_are_consistent(name):
  arch = architectures.get(name)
  assert arch.name == name
  assert arch.default_image_size >= arch.min_image_size > 0
  assert callable(arch.constructor)
  assert callable(arch.preprocess.preprocess_input)
  assert set(arch.checkpoint_sources) <= set(architectures.CHECKPOINT_SOURCES)
  # Every slim-loadable network has a slim scope, and only those do.
  assert ("slim" in arch.checkpoint_sources) == (arch.slim_scope is not None)
  assert arch.matches("scale") == arch.bn_has_scale
  assert arch.matches("depthwise") == arch.has_depthwise
  for kind in architectures.PATCH_KINDS:
    assert (arch.targets(kind) is None) == (not arch.matches(kind))


@pytest.mark.parametrize("bad", ["vgg16", "", None, "MobileNetV2"])
def test_get_names_the_bad_value_and_the_choices(bad):
  with pytest.raises(ValueError) as e:
    architectures.get(bad)
  assert repr(bad) in str(e.value)
  assert ", ".join(architectures.NAMES) in str(e.value)


def test_unknown_kind_names_the_choices():
  with pytest.raises(ValueError, match="scale_bias"):
    architectures.get("mobilenet_v2").targets("gamma")


def test_table_is_read_only():
  with pytest.raises(TypeError):
    architectures.TABLE["vgg16"] = architectures.TABLE["resnet50"]


def test_inception_scale_bias_is_beta_only():
  arch = architectures.get("inception_v3")
  assert "betas only" in arch.targets("scale_bias")
  assert arch.targets("scale") is None and arch.targets("depthwise") is None


@pytest.mark.parametrize("name", architectures.NAMES)
def test_data_and_models_agree_with_the_table(name):
  arch = architectures.get(name)
  assert data.default_image_size("cifar10", name) == arch.default_image_size
  assert models.get_architecture(name) is arch
  assert models.DEFAULT_IMAGE_SIZE[name] == arch.default_image_size
  assert data.ARCHITECTURE_IMAGE_SIZE[name] == arch.default_image_size
  images = np.array([[[[255.0, 0.0, 128.0]]]], "float32")
  # Copies: keras preprocess_input may scale numpy arrays in place.
  np.testing.assert_allclose(data.get_preprocess_fn(name)(images.copy()),
                             arch.preprocess_input(images.copy()))


def test_reexports_list_every_architecture():
  assert models.ARCHITECTURES == architectures.NAMES
  assert set(models.ARCHITECTURE_TABLE) == set(architectures.NAMES)
  assert set(data.ARCHITECTURE_PREPROCESS) == set(architectures.NAMES)


def test_checkpoint_tables_follow_the_architectures():
  assert tuple(checkpoint_names.SOURCE_ARCHITECTURES) == (
      architectures.CHECKPOINT_SOURCES)
  for source, names in checkpoint_names.SOURCE_ARCHITECTURES.items():
    for name in names:
      assert source in architectures.get(name).checkpoint_sources
  assert checkpoint_names.SLIM_SCOPE == {"mobilenet_v2": "MobilenetV2",
                                         "inception_v3": "InceptionV3"}
  assert models.CHECKPOINT_PREFIXES == ("slim:", "ssd_tf1:", "ssd_tf2:")


def test_check_weights(tmp_path):
  assert models.check_weights(None) is None
  assert models.check_weights(" None ") is None
  assert models.check_weights("") is None
  assert models.check_weights("imagenet") == "imagenet"
  assert models.check_weights("slim:/somewhere/model.ckpt") == (
      "slim:/somewhere/model.ckpt")
  path = tmp_path / "w.weights.h5"
  path.write_bytes(b"")
  assert models.check_weights(path) == str(path)
  for bad in (3, str(tmp_path / "missing.h5")):
    with pytest.raises(ValueError) as e:
      models.check_weights(bad)
    assert models.WEIGHTS_CHOICES in str(e.value)
  assert models.normalize_weights("none") is None
