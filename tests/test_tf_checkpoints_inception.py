"""Loading a TF-slim InceptionV3 checkpoint into keras.applications.InceptionV3.

Keras names InceptionV3's conv/BN layers automatically, so the loader matches
them by construction order. A checkpoint is written from a random Keras model
(V1 single-file format, like the 2016 `inception_v3.ckpt`), loaded into a
fresh model, and compared with the source model and with slim's InceptionV3
graph re-implemented below from `research/slim/nets/inception_v3.py`, which
reads the checkpoint by slim's names: a wrong order in the name table would
put weights in the wrong branch and change its output.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import ckpt_writers
from k4p1.models import ckpt_mapping
from k4p1.models import tf_checkpoints

_SIZE = 75  # keras.applications.InceptionV3's minimum input size


def _inception():
  return keras.applications.InceptionV3(include_top=False, weights=None,
                                        input_shape=(_SIZE, _SIZE, 3),
                                        pooling="avg")


def _slim_inception_v3_features(reader, images):
  """slim's inception_v3_base + global average pool, by checkpoint names."""

  def unit(net, scope, stride=1, padding="SAME"):
    get = lambda leaf: tf.constant(
        reader.get_tensor(f"InceptionV3/{scope}/{leaf}"))
    net = tf.nn.conv2d(net, get("weights"), stride, padding)
    net = tf.nn.batch_normalization(
        net, get("BatchNorm/moving_mean"), get("BatchNorm/moving_variance"),
        get("BatchNorm/beta"), None, 1e-3)  # scale=False: no gamma
    return tf.nn.relu(net)

  def chain(net, block, branch, scopes):
    for scope in scopes:
      reduce = scope.startswith("Conv2d_1a")  # the stride-2 VALID convs
      net = unit(net, f"{block}/{branch}/{scope}", 2 if reduce else 1,
                 "VALID" if reduce else "SAME")
    return net

  def avg_pool(net):
    return tf.nn.avg_pool2d(net, 3, 1, "SAME")

  def max_pool(net):
    return tf.nn.max_pool2d(net, 3, 2, "VALID")

  net = unit(images, "Conv2d_1a_3x3", 2, "VALID")
  net = unit(net, "Conv2d_2a_3x3", 1, "VALID")
  net = unit(net, "Conv2d_2b_3x3", 1, "SAME")
  net = max_pool(net)
  net = unit(net, "Conv2d_3b_1x1", 1, "VALID")
  net = unit(net, "Conv2d_4a_3x3", 1, "VALID")
  net = max_pool(net)
  for block in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
    b1 = (("Conv2d_0b_1x1", "Conv_1_0c_5x5") if block == "Mixed_5c" else
          ("Conv2d_0a_1x1", "Conv2d_0b_5x5"))
    net = tf.concat([
        chain(net, block, "Branch_0", ["Conv2d_0a_1x1"]),
        chain(net, block, "Branch_1", b1),
        chain(net, block, "Branch_2",
              ["Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_0c_3x3"]),
        chain(avg_pool(net), block, "Branch_3", ["Conv2d_0b_1x1"])], 3)
  net = tf.concat([
      chain(net, "Mixed_6a", "Branch_0", ["Conv2d_1a_1x1"]),
      chain(net, "Mixed_6a", "Branch_1",
            ["Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_1a_1x1"]),
      max_pool(net)], 3)
  for block in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
    net = tf.concat([
        chain(net, block, "Branch_0", ["Conv2d_0a_1x1"]),
        chain(net, block, "Branch_1",
              ["Conv2d_0a_1x1", "Conv2d_0b_1x7", "Conv2d_0c_7x1"]),
        chain(net, block, "Branch_2",
              ["Conv2d_0a_1x1", "Conv2d_0b_7x1", "Conv2d_0c_1x7",
               "Conv2d_0d_7x1", "Conv2d_0e_1x7"]),
        chain(avg_pool(net), block, "Branch_3", ["Conv2d_0b_1x1"])], 3)
  net = tf.concat([
      chain(net, "Mixed_7a", "Branch_0", ["Conv2d_0a_1x1", "Conv2d_1a_3x3"]),
      chain(net, "Mixed_7a", "Branch_1",
            ["Conv2d_0a_1x1", "Conv2d_0b_1x7", "Conv2d_0c_7x1",
             "Conv2d_1a_3x3"]),
      max_pool(net)], 3)
  for block, split in (("Mixed_7b", "Conv2d_0b_3x1"),
                       ("Mixed_7c", "Conv2d_0c_3x1")):
    b1 = chain(net, block, "Branch_1", ["Conv2d_0a_1x1"])
    b2 = chain(net, block, "Branch_2", ["Conv2d_0a_1x1", "Conv2d_0b_3x3"])
    net = tf.concat([
        chain(net, block, "Branch_0", ["Conv2d_0a_1x1"]),
        tf.concat([chain(b1, block, "Branch_1", ["Conv2d_0b_1x3"]),
                   chain(b1, block, "Branch_1", [split])], 3),
        tf.concat([chain(b2, block, "Branch_2", ["Conv2d_0c_1x3"]),
                   chain(b2, block, "Branch_2", ["Conv2d_0d_3x1"])], 3),
        chain(avg_pool(net), block, "Branch_3", ["Conv2d_0b_1x1"])], 3)
  return tf.reduce_mean(net, [1, 2]).numpy()


def _images(seed, batch=2):
  return np.random.default_rng(seed).uniform(
      -1, 1, (batch, _SIZE, _SIZE, 3)).astype("float32")


@pytest.fixture(scope="module")
def source():
  """Random weights; BN statistics measured on a batch (see the MobileNetV2
  test: fully random statistics make the features input-independent)."""
  model = _inception()
  rng = np.random.default_rng(0)
  norms = [l for l in model.layers
           if isinstance(l, keras.layers.BatchNormalization)]
  for v in model.trainable_weights:
    shape = tuple(v.shape)
    value = (rng.normal(0.0, 0.2, shape) if v.name == "beta" else
             v.numpy() * rng.uniform(0.8, 1.2, shape))
    v.assign(value.astype("float32"))
  momenta = [l.momentum for l in norms]
  for layer in norms:
    layer.momentum = 0.0
  model(_images(100, batch=16), training=True)
  for layer, momentum in zip(norms, momenta):
    layer.momentum = momentum
  return model


def test_slim_inception_v3_checkpoint_gives_source_and_slim_graph_outputs(
    tmp_path, source):
  # The 2016 release is a single-file V1 checkpoint with 1001-class logits.
  logits = {"InceptionV3/Logits/Conv2d_1c_1x1/weights":
                np.zeros((1, 1, 2048, 1001), np.float32),
            "InceptionV3/Logits/Conv2d_1c_1x1/biases":
                np.arange(1001, dtype=np.float32)}
  prefix = ckpt_writers.write_slim_checkpoint(
      source, str(tmp_path / "inception_v3.ckpt"), architecture="inception_v3",
      extra=logits, write_version="V1")
  model = _inception()

  report = tf_checkpoints.load_tf_checkpoint(model, f"slim:{tmp_path}",
                                             "inception_v3")

  x = _images(1)
  out = model(x).numpy()
  assert np.std(out, axis=0).mean() > 0.05  # features depend on the image
  assert report["loaded"] == len(model.weights) == 94 * 4
  assert report["unused"] == sorted(logits)
  assert np.max(np.abs(out - source(x).numpy())) <= 1e-5
  slim_out = _slim_inception_v3_features(tf.train.load_checkpoint(prefix), x)
  # Same weights, different conv kernels: allow float32 rounding relative to
  # the activations' magnitude.
  scale = max(1.0, float(np.max(np.abs(slim_out))))
  assert np.max(np.abs(out - slim_out)) <= 1e-5 * scale
  kernel, bias = tf_checkpoints.load_slim_logits(f"slim:{prefix}",
                                                 "inception_v3")
  assert kernel.shape == (2048, 1000)
  np.testing.assert_array_equal(bias, np.arange(1, 1001, dtype=np.float32))


def test_construction_order_matches_keras_automatic_numbering(source):
  # Keras numbers automatic names (conv2d, conv2d_1, ...) in creation order;
  # the graph walk must reproduce that order without reading names.
  number = lambda name: int((re.search(r"_(\d+)$", name) or [0, 0])[1])
  # pylint: disable-next=protected-access
  order = ckpt_mapping._construction_order(source)
  for cls in (keras.layers.Conv2D, keras.layers.BatchNormalization):
    numbers = [number(l.name) for l in order if isinstance(l, cls)]
    assert len(numbers) == 94
    assert numbers == sorted(numbers)
    # model.layers is not in that order: the walk is really needed.
    listed = [number(l.name) for l in source.layers if isinstance(l, cls)]
    assert listed != sorted(listed)
