"""Tests of the pure preprocessing functions (k4p1.data.preprocess)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from k4p1.data import preprocess
from k4p1.data import registry


def _seed(i):
  return tf.constant([i, 1234], dtype=tf.int64)


def test_random_sized_crop_respects_area_and_aspect_ranges():
  image = tf.zeros([120, 90, 3], tf.uint8)
  shapes = set()
  for i in range(60):
    crop = preprocess.random_sized_crop(image, _seed(i))
    h, w = crop.shape[0], crop.shape[1]
    shapes.add((h, w))
    area = h * w / (120 * 90)
    # Integer pixel sizes move area and aspect slightly past the real-valued range.
    assert 0.08 - 0.02 <= area <= 1.0
    if (h, w) != (120, 90):  # The whole image is the fallback after 10 misses.
      assert 3 / 4 - 0.1 <= w / h <= 4 / 3 + 0.1
  assert len(shapes) > 20  # Random, not a constant window.


def test_random_sized_crop_is_a_function_of_the_seed():
  image = tf.reshape(tf.range(64 * 64 * 3) % 251, [64, 64, 3])
  a = preprocess.random_sized_crop(image, _seed(7))
  b = preprocess.random_sized_crop(image, _seed(7))
  np.testing.assert_array_equal(a, b)


def test_central_crop_keeps_the_center():
  image = tf.reshape(tf.range(32 * 32), [32, 32, 1])
  crop = preprocess.central_crop(image, 0.875)
  assert crop.shape == (28, 28, 1)
  np.testing.assert_array_equal(crop, image[2:30, 2:30])
  assert preprocess.central_crop(image, 1.0) is image
  with pytest.raises(ValueError, match="fraction"):
    preprocess.central_crop(image, 0.0)


@pytest.mark.parametrize("size", [24, 96])
@pytest.mark.parametrize("channels", [1, 3])
def test_train_and_eval_outputs_have_any_requested_size(size, channels):
  image = tf.random.stateless_uniform([37, 53, channels], [1, 2], maxval=256,
                                      dtype=tf.int32)
  image = tf.cast(image, tf.uint8)
  for out in (preprocess.train_image(image, size, _seed(0), "mobilenet_v2"),
              preprocess.eval_image(image, size, "mobilenet_v2")):
    assert out.shape == (size, size, 3) and out.dtype == tf.float32
    assert -1.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0
    if channels == 1:  # Grey becomes three equal channels.
      np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_flip_follows_the_augmentation_switch():
  image = tf.cast(tf.reshape(tf.range(16 * 16 * 3) % 256, [16, 16, 3]), tf.uint8)
  plain = preprocess.eval_image(image, 16, "mobilenet_v2", crop_fraction=1.0)
  no_crop = registry.Augmentation(area_range=(1.0, 1.0),
                                  aspect_ratio_range=(1.0, 1.0))
  outputs = [preprocess.train_image(image, 16, _seed(i), "mobilenet_v2", augmentation=no_crop)
             for i in range(16)]
  flipped = [bool(np.array_equal(o, plain[:, ::-1])) for o in outputs]
  same = [bool(np.array_equal(o, plain)) for o in outputs]
  assert all(f or s for f, s in zip(flipped, same))
  assert any(flipped) and any(same)
  never = dataclasses.replace(no_crop, flip=False)
  for i in range(8):
    np.testing.assert_array_equal(
        preprocess.train_image(image, 16, _seed(i), "mobilenet_v2", augmentation=never), plain)


def test_architecture_preprocess_input():
  red = tf.constant([[[255.0, 0.0, 0.0]]])
  np.testing.assert_allclose(preprocess.get_preprocess_fn("mobilenet_v2")(red),
                             [[[1.0, -1.0, -1.0]]])
  np.testing.assert_allclose(preprocess.get_preprocess_fn("inception_v3")(red),
                             [[[1.0, -1.0, -1.0]]])
  # Caffe mode: RGB -> BGR, minus the ImageNet means (B, G, R).
  np.testing.assert_allclose(preprocess.get_preprocess_fn("resnet50")(red),
                             [[[-103.939, -116.779, 255.0 - 123.68]]], rtol=1e-6)
  # These models rescale internally: 0..255 passes through.
  for name in ("efficientnet_b0", "mobilenet_v3_large"):
    np.testing.assert_array_equal(preprocess.get_preprocess_fn(name)(red), red)
  assert set(preprocess.ARCHITECTURE_PREPROCESS) == set(
      registry.ARCHITECTURE_IMAGE_SIZE)
  with pytest.raises(ValueError, match="mobilenet_v2"):
    preprocess.get_preprocess_fn("vgg16")


def test_preprocessing_runs_inside_tf_data_graphs():
  images = tf.cast(tf.random.stateless_uniform([4, 20, 30, 3], [3, 4], maxval=256,
                                               dtype=tf.int32), tf.uint8)
  ds = tf.data.Dataset.from_tensor_slices(images).map(
      lambda im: preprocess.eval_image(im, 16, "resnet50"))
  graph_out = np.stack(list(ds.as_numpy_iterator()))
  eager_out = np.stack([preprocess.eval_image(im, 16, "resnet50") for im in images])
  np.testing.assert_allclose(graph_out, eager_out, rtol=1e-6)
