"""Tests of backbones, their weight sources, and the parameter counts the paper relies on."""

import urllib.error

import keras
import numpy as np
import pytest

from helpers import calibration
from k4p1 import models
from k4p1 import patches


@pytest.fixture(scope="module")
def mobilenet_v2_224():
  return models.build_backbone("mobilenet_v2", 224, weights=None)


@pytest.fixture(scope="module")
def inception_v3_299():
  return models.build_backbone("inception_v3", 299, weights=None)


def test_mobilenet_v2_counts_are_the_papers(mobilenet_v2_224):
  base = mobilenet_v2_224
  assert base.count_params() == 2_257_984
  sb = patches.apply_patch(base, "scale_bias+logits", task="cifar10", num_classes=10)
  assert patches.count_params(sb) == {"patch_trainable": 46_922, "patch_stored": 81_034,
                                      "shared": 2_189_760, "total": 2_270_794}
  assert patches.describe_targets(base) == {
      "stats": {"layers": 52, "trainable": 0},  # Statistics only: none trains.
      "scale_bias": {"layers": 52, "trainable": 34_112},
      "scale": {"layers": 52, "trainable": 17_056},
      "bias": {"layers": 52, "trainable": 17_056},
      "depthwise": {"layers": 17, "trainable": 64_224},
      # 35 Conv2D + 17 DepthwiseConv2D kernels (2,189,760) and 52 scores.
      "taps": {"layers": 52, "trainable": 2_189_812},
      # 35 Conv2D layers at rank 4: 4 * (k*k*C_in + C_out) each (of 2,125,536).
      "lora": {"layers": 35, "trainable": 74_348},
  }
  lora = patches.apply_patch(base, "lora+logits", task="lora", num_classes=10)
  assert patches.count_params(lora) == {"patch_trainable": 74_348 + 12_810,
                                        "patch_stored": 74_348 + 12_810,
                                        "shared": 2_257_984, "total": 2_345_142}
  assert patches.describe_targets(base, lora_rank=8)["lora"]["trainable"] == 2 * 74_348
  head = keras.layers.Dense(10)
  only_sb = patches.apply_patch(base, "scale_bias", task="sb", head=head)
  assert patches.count_params(only_sb)["patch_trainable"] == 34_112
  assert patches.count_params(only_sb)["patch_stored"] == 2 * 34_112
  dw = patches.apply_patch(base, "depthwise", task="dw", head=head)
  assert patches.count_params(dw)["patch_trainable"] == 64_224
  for classes in (10, 100, 1000):
    logits = patches.apply_patch(base, "logits", task=f"l{classes}", num_classes=classes)
    assert patches.count_params(logits)["patch_trainable"] == 1281 * classes


def test_inception_v3_counts_are_the_papers(inception_v3_299):
  base = inception_v3_299
  assert base.count_params() == 21_802_784
  head = keras.layers.Dense(10)
  beta_only = patches.apply_patch(base, "scale_bias", task="b", head=head)
  assert patches.count_params(beta_only)["patch_trainable"] == 17_216
  scaled = patches.apply_patch(base, "scale_bias", task="s", head=head,
                               add_missing_scales=True)
  assert patches.count_params(scaled)["patch_trainable"] == 34_432
  logits = patches.apply_patch(base, "logits", task="l", num_classes=7)
  assert patches.count_params(logits)["patch_trainable"] == 2049 * 7


@pytest.mark.parametrize("name", models.ARCHITECTURES)
def test_every_architecture_builds_a_feature_extractor(name):
  size = models.ARCHITECTURE_TABLE[name].min_image_size
  alpha = 0.35 if models.ARCHITECTURE_TABLE[name].supports_alpha and name == "mobilenet_v2" else 1.0
  base = models.build_backbone(name, size, weights=None, alpha=alpha)
  assert len(base.output.shape) == 2
  table = patches.describe_targets(base)
  arch = models.get_architecture(name)
  assert ("depthwise" in table) == arch.has_depthwise
  assert ("scale" in table) == arch.bn_has_scale
  task = patches.apply_patch(base, "scale_bias+logits", task="t", num_classes=2)
  x = np.zeros((1, size, size, 3), "float32")
  assert task(x).shape == (1, 2)


@pytest.mark.parametrize("kwargs, error, fragment", [
    (dict(name="mobilenet_v5", image_size=96), ValueError,
     "valid choices: mobilenet_v2, inception_v3, resnet50, efficientnet_b0, mobilenet_v3_large"),
    (dict(name="inception_v3", image_size=64), ValueError, ">= 75"),
    (dict(name="resnet50", image_size=64, alpha=0.5), ValueError, "alpha=0.5"),
    (dict(name="mobilenet_v2", image_size=64, pooling=None), ValueError, "pooling=None"),
    (dict(name="mobilenet_v2", image_size=64, weights=3), ValueError, "weights=3"),
    (dict(name="mobilenet_v2", image_size=64, weights="/no/such/file.h5"), FileNotFoundError,
     "/no/such/file.h5"),
])
def test_bad_backbone_arguments(kwargs, error, fragment):
  with pytest.raises(error) as e:
    models.build_backbone(**kwargs)
  assert fragment in str(e.value)


def test_unsupported_weights_extension(tmp_path):
  path = tmp_path / "w.pt"
  path.write_bytes(b"x")
  with pytest.raises(ValueError, match=r"\.keras, \.h5, \.weights\.h5"):
    models.build_backbone("mobilenet_v2", 32, weights=str(path), alpha=0.35)


def test_imagenet_offline_names_the_file_and_the_alternative(tmp_path, monkeypatch):
  from keras.src.backend import config
  from keras.src.utils import file_utils

  def no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -2] Name or service not known")

  monkeypatch.setattr(config, "keras_home", lambda: str(tmp_path))  # Empty cache.
  monkeypatch.setattr(file_utils, "urlretrieve", no_network)
  with pytest.raises(OSError) as e:
    models.build_backbone("mobilenet_v2", 96, weights="imagenet")
  message = str(e.value)
  assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in message
  assert "--weights=/path/to/" in message


def _assert_same_weights(model, donor):
  weighted = [l for l in model.layers if l.weights]
  assert len(weighted) == 104  # MobileNetV2: 52 conv + 52 BN layers.
  for layer in weighted:
    for mine, theirs in zip(layer.weights, donor.get_layer(layer.name).weights):
      np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_weights_from_keras_files_at_another_size(tmp_path):
  keras.utils.set_random_seed(0)
  source = models.build_backbone("mobilenet_v2", 64, weights=None, alpha=0.35)
  for layer in source.layers:  # Distinct values everywhere, BN statistics included.
    layer.set_weights([np.random.normal(size=w.shape).astype("float32") + 1.0
                       for w in layer.get_weights()])
  weights_only = str(tmp_path / "b.weights.h5")
  source.save_weights(weights_only)
  loaded = models.build_backbone("mobilenet_v2", 64, weights=weights_only, alpha=0.35)
  _assert_same_weights(loaded, source)

  # A whole classifier with the backbone nested inside, saved at 64 px, loaded at 32 px.
  inputs = keras.Input((64, 64, 3))
  classifier = keras.Model(inputs, keras.layers.Dense(5)(source(inputs)))
  for suffix in (".keras", ".h5"):
    path = str(tmp_path / f"classifier{suffix}")
    classifier.save(path)
    loaded = models.build_backbone("mobilenet_v2", 32, weights=path, alpha=0.35)
    _assert_same_weights(loaded, source)
  with pytest.raises(ValueError, match="No model inside"):
    models.build_backbone("mobilenet_v2", 32, weights=path, alpha=0.5)


def test_shared_imagenet_derived_backbone_loads_at_96_px(shared_data):
  path = str(shared_data / "mobilenet_v2_1.0_160_dogs.h5")
  base = models.build_backbone("mobilenet_v2", 96, weights=path)
  donor = keras.models.load_model(path, compile=False).get_layer("mobilenetv2_1.00_160")
  _assert_same_weights(base, donor)
  x = np.random.RandomState(0).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
  assert np.abs(base(x).numpy()).max() > 0.1  # Pretrained: features are alive.


def test_calibrate_batchnorm_sets_statistics_and_restores_flags():
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35)
  base.get_layer("bn_Conv1").trainable = False
  x = np.random.RandomState(0).uniform(-1, 1, (16, 32, 32, 3)).astype("float32")
  before = float(np.abs(base(x).numpy()).max())
  calibration.calibrate_batchnorm(base, x)
  assert base.get_layer("bn_Conv1").trainable is False
  assert base.get_layer("bn_Conv1").momentum == 0.99 or base.get_layer("bn_Conv1").momentum == 0.999
  after = base(x, training=False).numpy()
  assert before < 1e-6 < float(np.abs(after).max())


def test_size_agnostic_base_serves_every_resolution_with_one_set_of_variables():
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", None, weights=None, alpha=0.35)
  sized = models.build_backbone("mobilenet_v2", 48, weights=None, alpha=0.35)
  sized.set_weights(base.get_weights())
  task = patches.apply_patch(base, "scale_bias+logits", task="t", num_classes=2)
  head = patches.patch_info(task).head
  for size in (32, 48, 64):
    x = np.random.RandomState(size).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    assert task(x).shape == (2, 2)
  x = np.random.RandomState(0).uniform(-1, 1, (2, 48, 48, 3)).astype("float32")
  np.testing.assert_allclose(task(x).numpy(), head(sized(x)).numpy(), rtol=1e-6, atol=1e-6)
