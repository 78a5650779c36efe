"""One traced model function for the K task models of one base."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from k4p1 import models
from k4p1 import patches
from k4p1.train import fused_batch_norm
from k4p1.train import loop

SIZE, BATCH = 32, 4


def _task_models(num_classes=(4, 4), spec="scale_bias+logits"):
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", SIZE, weights=None, alpha=0.35)
  task_models = [patches.apply_patch(base, spec, task=f"t{k}", num_classes=c)
                 for k, c in enumerate(num_classes)]
  # Give each task different patch values, so a mix-up would show.
  rng = np.random.default_rng(1)
  for model in task_models[1:]:
    for layer in patches.patch_info(model).patch_layers.values():
      for weight in layer.weights:
        weight.assign(weight.numpy() * rng.uniform(0.5, 1.5, weight.shape))
  return base, task_models


def test_clones_of_one_base_share_one_function_per_head_size():
  _, task_models = _task_models((4, 4, 4))
  assert loop.make_task_gradients(task_models, keras.optimizers.SGD(0.1)
                                  ).num_traced_models == 1
  _, task_models = _task_models((4, 5, 4))
  assert loop.make_task_gradients(task_models, keras.optimizers.SGD(0.1)
                                  ).num_traced_models == 2


@pytest.mark.parametrize("spec,shared", [("scale_bias+logits", "frozen"),
                                         ("scale_bias+logits", "trained"),
                                         ("logits", "trained")])
def test_shared_function_equals_calling_each_model(spec, shared):
  base, task_models = _task_models(spec=spec)
  if shared == "trained":
    patches.set_shared_trainable(task_models, True)
  rng = np.random.default_rng(2)
  images = tf.constant(rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)), tf.float32)
  labels = tf.constant(rng.integers(0, 4, BATCH), tf.int32)
  gradients_fn = loop.make_task_gradients(task_models, keras.optimizers.SGD(0.1),
                                          label_smoothing=0.1)
  base_before = [v.numpy() for v in base.variables]
  assert gradients_fn.num_traced_models == 1

  @tf.function
  def direct(model, view):  # The model called directly (its fused view).
    watched = [v.value for v in model.trainable_variables]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(watched)
      logits = view(images, training=True)  # The model, with fused BN.
      loss = tf.reduce_sum(loop.cross_entropy(labels, logits, 4, 0.1)) / BATCH
    return tape.gradient(loss, watched), loss

  @tf.function
  def shared_fn(model):
    out = gradients_fn(model, images, labels, 4, BATCH, model.trainable_variables)
    return out["gradients"], out["loss_sum"] / BATCH

  for model in task_models:
    stats = [v for v in model.non_trainable_variables if "moving" in v.path]
    assert stats  # The task's BN statistics, or the base's.
    start = [v.numpy() for v in stats]
    want_grads, want_loss = direct(model, fused_batch_norm.fused_view(model))
    want_stats = [v.numpy() for v in stats]
    for v, value in zip(stats, start):
      v.assign(value)
    got_grads, got_loss = shared_fn(model)
    assert float(got_loss) == pytest.approx(float(want_loss), rel=1e-6)
    assert len(got_grads) == len(want_grads) == len(model.trainable_variables)
    for got, want in zip(got_grads, want_grads):
      np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)
    moved = 0
    for v, value, want in zip(stats, start, want_stats):
      np.testing.assert_allclose(v.numpy(), want, rtol=1e-5, atol=1e-7)
      moved += not np.array_equal(value, want)
    assert moved >= len(stats) // 2  # Training-mode BN updated its statistics.
  base_after = [v.numpy() for v in base.variables]
  unchanged = [np.array_equal(a, b) for a, b in zip(base_before, base_after)]
  # Gradients never change the base; its BN statistics change only where
  # tasks share its BN layers in training mode (a trained `logits` base).
  assert all(unchanged) == (spec != "logits")
