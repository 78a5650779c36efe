"""The optimised training step trains the same patches as the plain one.

`make_train_step` records only the trained variables on its tape and traces
BatchNormalization as fused ops (`k4p1.train.fused_batch_norm`). The reference
here is the straightforward step: a default GradientTape over
`model(x, training=True)` with Keras' own BN, the same loss, optimizer and
data. A few steps of each must leave the same patch variables (trainable ones
and the task's BN statistics) within float tolerance.

Float tolerance, measured: backprop through a stack of batch-statistics BN
layers of a randomly initialised MobileNetV2 is ill-conditioned. Feeding the
reference the same batches in reverse order (the same function in exact
arithmetic) moves its own early-layer updates by ~5% after a few steps. So
each trained variable must agree with the reference within a few times that
noise floor; BN statistics (forward pass only) within 1e-3.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from k4p1 import models
from k4p1 import patches
from k4p1 import train
from k4p1.train import fused_batch_norm
from k4p1.train import loop

# Results depend on the CPU kernels (oneDNN or Eigen): .ci/run runs these
# again with the other family (conftest.py, `kernels`).
pytestmark = pytest.mark.kernels

BATCH, SIZE, CLASSES, STEPS = 8, 64, 5, 2
SMOOTHING, DECAY, LEARNING_RATE = 0.1, 4e-5, 1e-3


def _batches():
  rng = np.random.default_rng(0)
  return [(rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32),
           rng.integers(0, CLASSES, BATCH).astype(np.int32))
          for _ in range(STEPS)]


def _task(spec, bn_stats="task"):
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", SIZE, weights=None, alpha=0.35)
  # Non-trivial statistics, so that inference-mode BN is not the identity.
  for layer in patches.leaf_layers(base):
    if isinstance(layer, keras.layers.BatchNormalization):
      channels = layer.moving_mean.shape[0]
      layer.moving_mean.assign(np.linspace(-0.2, 0.2, channels))
      layer.moving_variance.assign(np.linspace(0.5, 2.0, channels))
  task = patches.apply_patch(base, spec, task="t", num_classes=CLASSES,
                             bn_stats=bn_stats)
  # Momentum 0.9: the statistics move visibly within a few steps.
  train.set_bn_momentum(task, 0.9)
  return task


def _reference_steps(task, batches):
  variables = task.trainable_variables
  optimizer = train.build_optimizer("rmsprop", LEARNING_RATE)

  @tf.function
  def step(images, labels):
    with tf.GradientTape() as tape:
      logits = task(images, training=True)
      loss = tf.reduce_mean(loop.cross_entropy(labels, logits, CLASSES, SMOOTHING))
      loss += train.weight_decay_loss(variables, DECAY)
    gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(gradients, variables))

  for images, labels in batches:
    step(images, labels)


def _optimised_steps(task, batches, **kwargs):
  variables = loop.unique_trainable_variables([task])
  optimizer = train.build_optimizer("rmsprop", LEARNING_RATE)
  optimizer.build(variables)
  dataset = tf.data.Dataset.from_tensor_slices(
      (np.stack([b[0] for b in batches]), np.stack([b[1] for b in batches])))
  train_step = loop.make_train_step(
      tf.distribute.get_strategy(),
      [loop.TrainTask("t", task, CLASSES, dataset, BATCH)], optimizer, variables,
      tf.Variable(0, dtype=tf.int64), label_smoothing=SMOOTHING,
      weight_decay=DECAY, **kwargs)
  iterators = (iter(dataset),)
  for _ in batches:
    outputs = train_step(iterators)
  return outputs


def _patch_values(task):
  return {k: v.numpy().copy() for k, v in patches.named_patch_variables(task).items()}


def _run_all(spec, bn_stats="task", **kwargs):
  """Patch values: initial, reference, reference on reversed batches, optimised."""
  batches = _batches()
  task = _task(spec, bn_stats)
  initial = {id(v): v.numpy().copy() for v in task.weights}

  def reset():
    for v in task.weights:
      v.assign(initial[id(v)])

  _reference_steps(task, batches)
  expected = _patch_values(task)
  reset()
  _reference_steps(task, [(x[::-1].copy(), y[::-1].copy()) for x, y in batches])
  reordered = _patch_values(task)
  reset()
  outputs = _optimised_steps(task, batches, **kwargs)
  return initial, expected, reordered, _patch_values(task), task, outputs


@pytest.mark.parametrize("spec,bn_stats", [
    ("scale_bias+logits", "task"),
    ("depthwise+logits", "task"),
    ("logits", "task"),
    ("scale_bias+depthwise+logits", "frozen"),
])
@pytest.mark.slow
def test_optimised_step_trains_the_same_patch(spec, bn_stats):
  initial, expected, reordered, actual, task, outputs = _run_all(spec, bn_stats)
  assert np.isfinite(outputs["t/loss_sum"].numpy())
  assert expected.keys() == actual.keys()
  named = patches.named_patch_variables(task)
  norm = np.linalg.norm
  updates = {k: norm(expected[k] - initial[id(v)]) for k, v in named.items()}
  largest = max(updates.values())
  assert largest > 0
  for name, variable in named.items():
    if variable.trainable:
      floor = norm(reordered[name] - expected[name])
      difference = norm(actual[name] - expected[name])
      assert difference <= 4 * floor + 0.02 * updates[name] + 1e-5 * largest, (
          name, difference, floor, updates[name])
    else:  # Task BN statistics.
      np.testing.assert_allclose(actual[name], expected[name], rtol=1e-3,
                                 atol=1e-5, err_msg=name)
  # The comparison means something: the head and most of the patch moved.
  # (Not all: with frozen statistics some ReLU6 layers of this random
  # network saturate, so the gammas before them get no gradient.)
  trained = [k for k, v in named.items() if v.trainable]
  assert updates["logits/kernel"] > 0
  assert sum(updates[k] > 0 for k in trained) >= len(trained) / 2


def test_fused_batch_norm_matches_keras_in_both_modes():
  rng = np.random.default_rng(1)
  x = tf.constant(rng.normal(1.0, 3.0, (4, 5, 5, 6)).astype(np.float32))
  results = []
  for fused in (False, True):
    layer = keras.layers.BatchNormalization(momentum=0.8)
    layer.build(x.shape)
    layer.gamma.assign(np.linspace(0.5, 1.5, 6))
    layer.beta.assign(np.linspace(-1, 1, 6))
    layer.moving_variance.assign(np.linspace(0.5, 2.0, 6))
    call = fused_batch_norm.FusedBatchNorm(layer) if fused else layer

    @tf.function
    def run(x, training, layer=layer, call=call):
      with tf.GradientTape() as tape:
        tape.watch(x)
        y = call(x, training=training)
        loss = tf.reduce_sum(y * tf.sin(y))
      return [y] + tape.gradient(loss, [x, layer.gamma, layer.beta])

    values = [t.numpy() for t in run(x, True) + run(x, False)]
    results.append(values + [layer.moving_mean.numpy(),
                             layer.moving_variance.numpy()])
  for keras_value, fused_value in zip(*results):
    np.testing.assert_allclose(fused_value, keras_value, rtol=1e-4, atol=1e-5)


def _nested_model():
  """Images -> a nested functional model and a Sequential one, BN in each."""
  keras.utils.set_random_seed(0)
  inner_input = keras.Input((6, 6, 3))
  hidden = keras.layers.Conv2D(4, 3, name="conv")(inner_input)
  hidden = keras.layers.BatchNormalization(momentum=0.8, name="bn_inner")(hidden)
  inner = keras.Model(inner_input, hidden, name="inner")
  images = keras.Input((6, 6, 3))
  hidden = inner(images)
  hidden = patches.FrozenStatsBatchNormalization(name="bn_frozen")(hidden)
  features = keras.Sequential(
      [keras.Input((4, 4, 4)), keras.layers.BatchNormalization(name="bn_seq"),
       keras.layers.GlobalAveragePooling2D()], name="seq")(hidden)
  outputs = keras.layers.BatchNormalization(name="bn_2d")(
      keras.layers.Dense(3, name="head")(features))  # 2-D: Keras' own call.
  model = keras.Model(images, outputs, name="outer")
  for layer in patches.leaf_layers(model):
    if isinstance(layer, keras.layers.BatchNormalization):
      channels = layer.moving_mean.shape[0]
      layer.moving_mean.assign(np.linspace(-0.2, 0.2, channels))
      layer.moving_variance.assign(np.linspace(0.5, 2.0, channels))
  return model


def _checkpoint_keys(model, path) -> list:
  return [name for name, _ in tf.train.list_variables(
      tf.train.Checkpoint(model=model).write(str(path)))]


def test_fused_view_computes_the_model_on_its_own_variables(tmp_path):
  model = _nested_model()
  config = model.get_config()
  keys = _checkpoint_keys(model, tmp_path / "before")
  keras_call = keras.layers.BatchNormalization.call
  view = fused_batch_norm.fused_view(model)
  # Every BN layer the fused op can run is wrapped; the rest are the model's.
  wrapped = [l.layer.name for l in patches.leaf_layers(view)
             if isinstance(l, fused_batch_norm.FusedBatchNorm)]
  assert sorted(wrapped) == ["bn_2d", "bn_frozen", "bn_inner", "bn_seq"]
  own = {id(l) for l in patches.leaf_layers(model)}
  assert all(id(l) in own for l in patches.leaf_layers(view)
             if not isinstance(l, fused_batch_norm.FusedBatchNorm))
  model_variables = {id(v) for v in model.variables}
  assert {id(v) for v in view.variables} <= model_variables
  x = np.random.default_rng(0).normal(size=(5, 6, 6, 3)).astype(np.float32)
  initial = [v.numpy() for v in model.variables]
  for training in (False, True):
    expected = model(x, training=training).numpy()
    after_keras = [v.numpy() for v in model.variables]
    for v, value in zip(model.variables, initial):
      v.assign(value)
    actual = tf.function(lambda x, t=training: view(x, training=t))(x).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    for v, want in zip(model.variables, after_keras):  # Statistics updated alike.
      np.testing.assert_allclose(v.numpy(), want, rtol=1e-5, atol=1e-6,
                                 err_msg=v.path)
    for v, value in zip(model.variables, initial):
      v.assign(value)
  # Nothing about the model or Keras changed.
  assert model.get_config() == config
  assert _checkpoint_keys(model, tmp_path / "after") == keys
  assert keras.layers.BatchNormalization.call is keras_call


def test_a_model_without_a_graph_is_its_own_view():

  class Subclassed(keras.Model):

    def __init__(self):
      super().__init__()
      self.bn = keras.layers.BatchNormalization()

    def call(self, x, training=None):
      return self.bn(x, training=training)

  model = Subclassed()
  model(np.zeros((2, 3, 3, 2), np.float32))
  assert fused_batch_norm.fused_view(model) is model
