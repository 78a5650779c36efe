"""Tests of the multi-task serving artifact."""

import numpy as np
import pytest
import tensorflow as tf

from k4p1 import models
from k4p1 import patches
from test_patches_core import images
from test_patches_core import tiny_base


@pytest.mark.slow
def test_exported_model_serves_a_mixed_batch_like_the_task_models(tmp_path):
  base = tiny_base()
  task_models = [
      patches.apply_patch(base, "scale_bias+logits", task="a", num_classes=3),
      patches.apply_patch(base, "depthwise+logits", task="b", num_classes=5),
      patches.apply_patch(base, "logits", task="c", num_classes=2),
  ]
  x = images(9)
  rng = np.random.RandomState(0)
  for model in task_models:  # Distinct patches, so routing errors would show.
    for variable in model.trainable_variables:
      variable.assign(variable.numpy() + rng.normal(0, 0.05, variable.shape).astype("float32"))
  task_ids = np.array([2, 0, 1, 1, 0, 2, 0, 1, 2], "int32")
  path = str(tmp_path / "serving")
  patches.export_multitask(task_models, path)

  served = tf.saved_model.load(path)
  logits = served.serve(tf.constant(x), tf.constant(task_ids)).numpy()
  assert logits.shape == (9, 5)
  assert [n.decode() for n in served.task_names().numpy()] == ["a", "b", "c"]
  assert served.num_classes().numpy().tolist() == [3, 5, 2]
  eager = patches.route_tasks(task_models, tf.constant(x), tf.constant(task_ids)).numpy()
  for task_id, model in enumerate(task_models):
    rows = np.flatnonzero(task_ids == task_id)
    # The same examples as one batch: routing runs exactly this group.
    expected = model(x[rows], training=False).numpy()
    classes = patches.patch_info(model).num_classes
    np.testing.assert_array_equal(eager[rows, :classes], expected)
    # The SavedModel's optimised graph fuses kernels (conv + BN): float32
    # rounding accumulated over ~50 layers, ~2e-5 on logits of magnitude ~4.
    np.testing.assert_allclose(logits[rows, :classes], expected, rtol=1e-4, atol=1e-4)
    assert np.all(logits[rows, classes:] == patches.PAD_LOGIT)


def test_tasks_at_other_input_sizes_get_resized_images():
  base32 = tiny_base()
  base48 = models.build_backbone("mobilenet_v2", 48, weights=None, alpha=0.35)
  base48.set_weights(base32.get_weights())
  small = patches.apply_patch(base32, "scale_bias+logits", task="s", num_classes=2)
  large = patches.apply_patch(base48, "scale_bias+logits", task="l", num_classes=2)
  x = images(4)
  ids = tf.constant([1, 0, 1, 0])
  routed = patches.route_tasks([small, large], tf.constant(x), ids).numpy()
  np.testing.assert_array_equal(routed[[1, 3]], small(x[[1, 3]], training=False).numpy())
  resized = tf.image.resize(x[[0, 2]], (48, 48))
  np.testing.assert_allclose(routed[[0, 2]], large(resized, training=False).numpy(),
                             atol=1e-5)


def test_a_batch_without_some_task_is_served():
  base = tiny_base()
  task_models = [patches.apply_patch(base, "scale_bias+logits", task=t, num_classes=2)
                 for t in ("a", "b", "c")]
  x = images(4)
  routed = patches.route_tasks(task_models, tf.constant(x), tf.constant([2, 0, 2, 0])).numpy()
  np.testing.assert_array_equal(routed[[1, 3]], task_models[0](x[[1, 3]], training=False).numpy())
  np.testing.assert_array_equal(routed[[0, 2]], task_models[2](x[[0, 2]], training=False).numpy())
