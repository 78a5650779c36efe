"""Loading TF-slim and Object Detection checkpoints into Keras MobileNetV2.

Checkpoints are written here with the real variable names and layouts (TF1
name-based via a graph-mode `tf.compat.v1.train.Saver`, TF2 object-based with
the OD API's object graph) from a Keras model with random weights, loaded into
a fresh model and compared with (a) the source model and (b) an independent
re-implementation of slim's MobileNetV2 graph that reads the checkpoint by
slim's names, so a wrong name table cannot cancel itself out.
"""

import os
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import ckpt_writers
from k4p1.models import checkpoint_names
from k4p1.models import tf_checkpoints

Mismatch = tf_checkpoints.CheckpointMismatchError

# Strides of slim's V2_DEF expanded_conv blocks (mobilenet_v2.py).
_V2_STRIDES = (1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1)


def _mobilenet(alpha=0.35, size=32, **kwargs):
  kwargs.setdefault("include_top", False)
  kwargs.setdefault("pooling", "avg")
  return keras.applications.MobileNetV2(
      alpha=alpha, weights=None, input_shape=(size, size, 3), **kwargs)


def _randomize(model, seed=0):
  """Random weights, and BN statistics of real activations.

  Fully random BN statistics wash the input out (every image then gives the
  same features, hiding mapping errors); statistics measured on a batch keep
  the features input-dependent while still being far from the 0/1 defaults.
  """
  rng = np.random.default_rng(seed)
  norms = [l for l in model.layers
           if isinstance(l, keras.layers.BatchNormalization)]
  for v in model.trainable_weights:
    shape = tuple(v.shape)
    if v.name == "gamma":
      value = rng.uniform(0.5, 1.5, shape)
    elif v.name == "beta":
      value = rng.normal(0.0, 0.2, shape)
    else:
      value = v.numpy() * rng.uniform(0.8, 1.2, shape)
    v.assign(value.astype("float32"))
  momenta = [l.momentum for l in norms]
  for layer in norms:
    layer.momentum = 0.0
  model(_images(model.input_shape[1], seed + 100, batch=16), training=True)
  for layer, momentum in zip(norms, momenta):
    layer.momentum = momentum
  return model


def _images(size, seed=1, batch=2):
  return np.random.default_rng(seed).uniform(
      -1, 1, (batch, size, size, 3)).astype("float32")


def _slim_mobilenet_v2_features(reader, images, scope="MobilenetV2"):
  """Slim's MobileNetV2 base + global pool, read by slim names; SAME pads."""
  get = lambda name: tf.constant(reader.get_tensor(f"{scope}/{name}"))

  def batch_norm(net, path):
    return tf.nn.batch_normalization(
        net, get(path + "/moving_mean"), get(path + "/moving_variance"),
        get(path + "/beta"), get(path + "/gamma"), 1e-3)

  def conv(net, path, stride=1, activation=True):
    net = tf.nn.conv2d(net, get(path + "/weights"), stride, "SAME")
    net = batch_norm(net, path + "/BatchNorm")
    return tf.nn.relu6(net) if activation else net

  net = conv(images, "Conv", stride=2)
  for i, stride in enumerate(_V2_STRIDES):
    block = "expanded_conv" if i == 0 else f"expanded_conv_{i}"
    inputs = net
    if reader.has_tensor(f"{scope}/{block}/expand/weights"):
      net = conv(net, block + "/expand")
    net = tf.nn.depthwise_conv2d(
        net, get(block + "/depthwise/depthwise_weights"),
        [1, stride, stride, 1], "SAME")
    net = tf.nn.relu6(batch_norm(net, block + "/depthwise/BatchNorm"))
    net = conv(net, block + "/project", activation=False)
    if stride == 1 and net.shape[-1] == inputs.shape[-1]:
      net += inputs
  net = conv(net, "Conv_1")
  return tf.reduce_mean(net, [1, 2]).numpy()


def _max_diff(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _assert_matches_slim_graph(keras_out, slim_out):
  # Same weights, different conv kernels: float32 rounding relative to the
  # features' magnitude (up to 6 after relu6).
  scale = max(1.0, float(np.max(np.abs(slim_out))))
  assert _max_diff(keras_out, slim_out) <= 1e-5 * scale


@pytest.fixture(scope="module")
def source():
  """A random MobileNetV2 0.35 / 32 px, shared (read-only) by the tests."""
  return _randomize(_mobilenet())


@pytest.fixture(scope="module")
def slim_values(source):
  return ckpt_writers.checkpoint_values(source, "slim", "mobilenet_v2")


@pytest.fixture(scope="module")
def slim_prefix(slim_values, tmp_path_factory):
  directory = tmp_path_factory.mktemp("slim")
  return ckpt_writers.write_tf1_checkpoint(slim_values,
                                           str(directory / "mobilenet_v2.ckpt"))


@pytest.mark.parametrize("alpha,size", [(0.35, 32), (0.5, 35)])
def test_slim_checkpoint_gives_source_and_slim_graph_outputs(tmp_path, alpha,
                                                             size):
  original = _randomize(_mobilenet(alpha, size))
  prefix = ckpt_writers.write_slim_checkpoint(
      original, str(tmp_path / "mobilenet_v2.ckpt"))
  model = _mobilenet(alpha, size)

  report = tf_checkpoints.load_tf_checkpoint(
      model, f"slim:{prefix}", "mobilenet_v2", alpha=alpha)

  x = _images(size)
  assert np.std(model(x), axis=0).mean() > 0.05  # features depend on the image
  assert report["loaded"] == len(model.weights) == 260
  assert report["unused"] == []
  assert _max_diff(model(x), original(x)) <= 1e-5
  slim_out = _slim_mobilenet_v2_features(tf.train.load_checkpoint(prefix), x)
  _assert_matches_slim_graph(model(x), slim_out)


def test_ssd_tf1_checkpoint_loads_feature_extractor_and_ignores_ssd_layers(
    tmp_path, source):
  ssd_only = {
      "FeatureExtractor/MobilenetV2/layer_19_1_Conv2d_2_1x1_256/weights":
          np.ones((1, 1, 1280, 256), np.float32),
      "FeatureExtractor/MobilenetV2/layer_19_1_Conv2d_2_1x1_256/BatchNorm/beta":
          np.ones((256,), np.float32),
      "BoxPredictor_0/BoxEncodingPredictor/weights":
          np.ones((1, 1, 96, 12), np.float32),
      "global_step": np.array(200000, np.int64),
  }
  prefix = ckpt_writers.write_slim_checkpoint(
      source, str(tmp_path / "model.ckpt"), kind="ssd_tf1",
      extra=ssd_only)
  model = _mobilenet()

  report = tf_checkpoints.load_tf_checkpoint(model, f"ssd_tf1:{prefix}",
                                             "mobilenet_v2", alpha=0.35)

  x = _images(32)
  assert _max_diff(model(x), source(x)) <= 1e-5
  slim_out = _slim_mobilenet_v2_features(
      tf.train.load_checkpoint(prefix), x, scope="FeatureExtractor/MobilenetV2")
  _assert_matches_slim_graph(model(x), slim_out)
  assert report["unused"] == sorted(ssd_only)


@pytest.mark.parametrize("backbone_attribute,aliases_first", [
    ("classification_backbone", False),  # the OD API's current layout
    ("classification_backbone", True),   # keys saved under layer-M aliases
    ("mobilenet_v2", False),             # older OD code's attribute name
])
def test_ssd_tf2_checkpoint_loads_keras_backbone(tmp_path, source,
                                                 backbone_attribute,
                                                 aliases_first):
  ckpt_writers.write_od_tf2_checkpoint(
      source, str(tmp_path / "checkpoint"),
      backbone_attribute=backbone_attribute, aliases_first=aliases_first)
  model = _mobilenet()

  # The extracted model directory (holding checkpoint/ckpt-0) is accepted.
  report = tf_checkpoints.load_tf_checkpoint(model, f"ssd_tf2:{tmp_path}",
                                             "mobilenet_v2", alpha=0.35)

  x = _images(32)
  assert report["loaded"] == len(model.weights)
  assert report["checkpoint"] == str(tmp_path / "checkpoint" / "ckpt-0")
  assert _max_diff(model(x), source(x)) <= 1e-5
  assert any("_box_predictor" in k for k in report["unused"])
  assert not any("classification_backbone" in k or "/mobilenet_v2/" in k
                 for k in report["unused"])


def test_ssd_tf2_keys_are_the_canonical_object_graph_keys(tmp_path, source):
  prefix = ckpt_writers.write_od_tf2_checkpoint(source, str(tmp_path))
  keys = {name for name, _ in tf.train.list_variables(prefix)}
  mapped = [n for _, n in tf_checkpoints.map_model_weights(
      source, "ssd_tf2", "mobilenet_v2")]
  assert set(mapped) <= keys
  assert ("model/_feature_extractor/classification_backbone/"
          "layer_with_weights-2/depthwise_kernel/.ATTRIBUTES/VARIABLE_VALUE"
          in keys)


def test_missing_variable_fails_naming_it(tmp_path, slim_values):
  values = dict(slim_values)
  del values["MobilenetV2/expanded_conv_3/depthwise/depthwise_weights"]
  prefix = ckpt_writers.write_tf1_checkpoint(values, str(tmp_path / "m.ckpt"))
  with pytest.raises(tf_checkpoints.CheckpointMismatchError) as e:
    tf_checkpoints.load_tf_checkpoint(_mobilenet(), f"slim:{prefix}",
                                      "mobilenet_v2", alpha=0.35)
  message = str(e.value)
  assert "MobilenetV2/expanded_conv_3/depthwise/depthwise_weights" in message
  assert "block_3_depthwise/kernel" in message
  assert "found missing" in message
  assert "1 weights" in message


def test_misshaped_variable_fails_naming_both_shapes(tmp_path, slim_values):
  values = dict(slim_values)
  name = "MobilenetV2/Conv_1/BatchNorm/gamma"
  values[name] = np.ones((640,), np.float32)
  prefix = ckpt_writers.write_tf1_checkpoint(values, str(tmp_path / "m.ckpt"))
  with pytest.raises(tf_checkpoints.CheckpointMismatchError,
                     match=r"Conv_1/BatchNorm/gamma for Conv_1_bn/gamma: "
                     r"expected \(1280,\), found \(640,\)"):
    tf_checkpoints.load_tf_checkpoint(_mobilenet(), f"slim:{prefix}",
                                      "mobilenet_v2", alpha=0.35)


def test_checkpoint_of_another_alpha_fails(tmp_path):
  prefix = ckpt_writers.write_slim_checkpoint(_mobilenet(alpha=0.5),
                                              str(tmp_path / "m.ckpt"))
  with pytest.raises(Mismatch, match="alpha=0.35"):
    tf_checkpoints.load_tf_checkpoint(_mobilenet(alpha=0.35), f"slim:{prefix}",
                                      "mobilenet_v2", alpha=0.35)


def test_a_model_weight_outside_the_tables_fails(slim_prefix):
  prefix = slim_prefix
  with_top = _mobilenet(include_top=True, classes=7, pooling=None)
  with pytest.raises(tf_checkpoints.CheckpointMismatchError,
                     match=r"no table entry\) for predictions/kernel"):
    tf_checkpoints.load_tf_checkpoint(with_top, f"slim:{prefix}",
                                      "mobilenet_v2", alpha=0.35)


@pytest.mark.parametrize("use_ema", [True, False])
def test_moving_average_copies_are_preferred(tmp_path, slim_values, use_ema):
  values = slim_values
  ema_kernel = np.full((1, 1, 112, 1280), 0.5, np.float32)
  ema_mean = np.full((1280,), 3.0, np.float32)
  extra = {"MobilenetV2/Conv_1/weights/ExponentialMovingAverage": ema_kernel,
           # BN statistics are not trainable: slim restores them raw.
           "MobilenetV2/Conv_1/BatchNorm/moving_mean/ExponentialMovingAverage":
               ema_mean}
  prefix = ckpt_writers.write_tf1_checkpoint({**values, **extra},
                                             str(tmp_path / "m.ckpt"))
  model = _mobilenet()

  report = tf_checkpoints.load_tf_checkpoint(
      model, f"slim:{prefix}", "mobilenet_v2", alpha=0.35, use_ema=use_ema)

  kernel = model.get_layer("Conv_1").kernel.numpy()
  mean = model.get_layer("Conv_1_bn").moving_mean.numpy()
  np.testing.assert_array_equal(
      mean, values["MobilenetV2/Conv_1/BatchNorm/moving_mean"])
  if use_ema:
    np.testing.assert_array_equal(kernel, ema_kernel)
    assert report["from_ema"] == 1
    assert "MobilenetV2/Conv_1/weights" not in report["unused"]
  else:
    np.testing.assert_array_equal(kernel, values["MobilenetV2/Conv_1/weights"])
    assert report["from_ema"] == 0
    assert ("MobilenetV2/Conv_1/weights/ExponentialMovingAverage"
            in report["unused"])


def test_unused_variables_are_logged(tmp_path, slim_values):
  shapes = {"weights": (1, 1, 1280, 1001), "biases": (1001,)}
  extra = {f"MobilenetV2/Logits/Conv2d_1c_1x1/{leaf}": np.zeros(shape, np.float32)
           for leaf, shape in shapes.items()}
  prefix = ckpt_writers.write_tf1_checkpoint({**slim_values, **extra},
                                             str(tmp_path / "m.ckpt"))
  with mock.patch.object(tf_checkpoints.logging, "info") as info:
    tf_checkpoints.load_tf_checkpoint(_mobilenet(), f"slim:{prefix}",
                                      "mobilenet_v2", alpha=0.35)
  unused_calls = [c for c in info.call_args_list if "unused" in c.args[0]]
  assert len(unused_calls) == 1
  assert unused_calls[0].args[1] == 2
  assert "MobilenetV2/Logits/Conv2d_1c_1x1/biases" in unused_calls[0].args[2]


def test_bad_sources_fail_with_valid_choices(tmp_path):
  model = _mobilenet()
  with pytest.raises(ValueError, match="ssd_tf1"):
    tf_checkpoints.load_tf_checkpoint(model, "caffe:/x", "mobilenet_v2")
  with pytest.raises(ValueError, match="KIND:PATH"):
    tf_checkpoints.load_tf_checkpoint(model, "/just/a/path", "mobilenet_v2")
  for kind in ("ssd_tf1", "ssd_tf2"):
    with pytest.raises(ValueError, match="valid choices for .*: mobilenet_v2"):
      tf_checkpoints.load_tf_checkpoint(model, f"{kind}:/x", "inception_v3")
  with pytest.raises(ValueError, match="mobilenet_v2, inception_v3"):
    tf_checkpoints.load_tf_checkpoint(model, "slim:/x", "resnet50")
  missing = str(tmp_path / "nowhere" / "model.ckpt")
  with pytest.raises(FileNotFoundError, match="nowhere/model.ckpt"):
    tf_checkpoints.load_tf_checkpoint(model, f"slim:{missing}", "mobilenet_v2")


def test_checkpoint_paths_resolve(tmp_path):
  values = {"MobilenetV2/Conv/weights": np.ones((3, 3, 3, 16), np.float32)}
  # A slim tarball's directory: one .index, no `checkpoint` state file.
  prefix = ckpt_writers.write_tf1_checkpoint(values,
                                             str(tmp_path / "a" / "m.ckpt"))
  assert sorted(os.listdir(tmp_path / "a")) == [
      "m.ckpt.data-00000-of-00001", "m.ckpt.index"]
  assert tf_checkpoints.resolve_checkpoint_path(str(tmp_path / "a")) == prefix
  assert tf_checkpoints.resolve_checkpoint_path(prefix + ".index") == prefix
  # The 2016 InceptionV3 release is one V1 file (loaded in the Inception test).
  v1 = ckpt_writers.write_tf1_checkpoint(values, str(tmp_path / "b" / "m.ckpt"),
                                         write_version="V1")
  assert os.listdir(tmp_path / "b") == ["m.ckpt"]
  assert tf_checkpoints.resolve_checkpoint_path(str(tmp_path / "b")) == v1
  assert tf_checkpoints.resolve_checkpoint_path(v1) == v1
  ckpt_writers.write_tf1_checkpoint(values, str(tmp_path / "a" / "n.ckpt"))
  with pytest.raises(ValueError, match="several checkpoints"):
    tf_checkpoints.resolve_checkpoint_path(str(tmp_path / "a"))


def test_checkpoints_of_the_other_format_fail_with_a_hint(tmp_path, source,
                                                          slim_prefix):
  model = _mobilenet()
  tf2 = ckpt_writers.write_od_tf2_checkpoint(source, str(tmp_path / "tf2"))
  with pytest.raises(Mismatch, match="'ssd_tf2:'"):
    tf_checkpoints.load_tf_checkpoint(model, f"slim:{tf2}", "mobilenet_v2")
  with pytest.raises(Mismatch, match="'ssd_tf1:'"):
    tf_checkpoints.load_tf_checkpoint(model, f"ssd_tf2:{slim_prefix}",
                                      "mobilenet_v2")


def test_slim_logits_become_a_1000_class_dense_head(tmp_path, slim_values,
                                                    slim_prefix):
  rng = np.random.default_rng(3)
  weights = rng.normal(0, 0.1, (1, 1, 1280, 1001)).astype(np.float32)
  biases = rng.normal(0, 0.1, (1001,)).astype(np.float32)
  scope = checkpoint_names.SLIM_LOGITS_SCOPE["mobilenet_v2"]
  prefix = ckpt_writers.write_tf1_checkpoint(
      {**slim_values, f"{scope}/weights": weights, f"{scope}/biases": biases},
      str(tmp_path / "m.ckpt"))

  kernel, bias = tf_checkpoints.load_slim_logits(f"slim:{prefix}",
                                                 "mobilenet_v2")

  assert kernel.shape == (1280, 1000) and bias.shape == (1000,)
  head = keras.layers.Dense(1000)
  head.build((None, 1280))
  head.set_weights([kernel, bias])
  x = _images(32)
  features = _slim_mobilenet_v2_features(tf.train.load_checkpoint(prefix), x)
  slim_logits = features @ weights[0, 0] + biases  # slim's 1x1 conv on the pool
  # Keras class k is slim class k + 1 (slim's class 0 is "background").
  np.testing.assert_allclose(head(features), slim_logits[:, 1:], rtol=1e-5,
                             atol=1e-5)
  full_kernel, full_bias = tf_checkpoints.load_slim_logits(
      f"slim:{prefix}", "mobilenet_v2", drop_background=False)
  assert full_kernel.shape == (1280, 1001) and full_bias.shape == (1001,)
  with pytest.raises(ValueError, match="slim"):
    tf_checkpoints.load_slim_logits(f"ssd_tf1:{prefix}", "mobilenet_v2")
  with pytest.raises(Mismatch, match="no .*logits"):
    tf_checkpoints.load_slim_logits(f"slim:{slim_prefix}", "mobilenet_v2")
