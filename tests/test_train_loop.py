"""The training step: loss scaling under strategies, what moves, K tasks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from k4p1 import models
from k4p1 import patches
from k4p1 import train
from k4p1.train import loop
from k4p1.train import progress

GLOBAL_BATCH = 8
NUM_CLASSES = 3


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  images = rng.normal(size=(GLOBAL_BATCH, 4)).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, size=GLOBAL_BATCH).astype(np.int32)
  return images, labels


def _one_sgd_step(strategy, images, labels, label_smoothing, weight_decay):
  """Weights of a Dense model after one step of `make_train_step`."""
  dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
  with strategy.scope():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(NUM_CLASSES, name="dense")])
    optimizer = keras.optimizers.SGD(0.5)
    step = tf.Variable(0, dtype=tf.int64)
    variables = loop.unique_trainable_variables([model])
    optimizer.build(variables)
  # The strategy splits each global batch between its replicas.
  distributed = strategy.experimental_distribute_dataset(dataset)
  task = loop.TrainTask("t", model, NUM_CLASSES, distributed, GLOBAL_BATCH)
  train_step = loop.make_train_step(strategy, [task], optimizer, variables, step,
                                    label_smoothing=label_smoothing,
                                    weight_decay=weight_decay)
  outputs = train_step((iter(distributed),))
  return [v.numpy() for v in model.weights], outputs, int(step.numpy())


def test_one_step_equals_the_global_batch_gradient_under_every_strategy():
  images, labels = _batch()
  smoothing, decay = 0.1, 0.01
  # Reference: plain gradient of the global-batch mean loss plus the penalty.
  keras.utils.set_random_seed(1)
  reference = keras.Sequential([keras.Input((4,)), keras.layers.Dense(NUM_CLASSES)])
  with tf.GradientTape() as tape:
    logits = reference(images)
    targets = tf.one_hot(labels, NUM_CLASSES) * (1 - smoothing) + smoothing / NUM_CLASSES
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, logits))
    loss += decay * tf.reduce_sum(tf.square(reference.weights[0]))
  grads = tape.gradient(loss, reference.weights)
  expected = [w.numpy() - 0.5 * g.numpy() for w, g in zip(reference.weights, grads)]

  for strategy in (train.build_strategy("default"), train.build_strategy("mirrored")):
    assert strategy.num_replicas_in_sync in (1, 2)
    weights, outputs, step = _one_sgd_step(strategy, images, labels, smoothing, decay)
    for got, want in zip(weights, expected):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert step == 1
    assert float(outputs["t/count"]) == GLOBAL_BATCH
    penalty = decay * np.sum(np.square(reference.weights[0].numpy()))
    assert float(outputs["weight_decay"]) == pytest.approx(penalty, rel=1e-5)


def test_cross_entropy_matches_keras_label_smoothing():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(5, 4)).astype(np.float32)
  labels = np.array([0, 3, 1, 2, 2], np.int32)
  ours = loop.cross_entropy(labels, logits, 4, label_smoothing=0.1)
  keras_loss = keras.losses.CategoricalCrossentropy(
      from_logits=True, label_smoothing=0.1, reduction=None)(
          tf.one_hot(labels, 4), logits)
  np.testing.assert_allclose(ours.numpy(), keras_loss.numpy(), rtol=1e-5)


def _tiny_base():
  keras.utils.set_random_seed(0)
  return models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35)


def _train(task_models, steps=2, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.normal(size=(16, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, size=16).astype(np.int32)
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(4)
  strategy = tf.distribute.get_strategy()
  optimizer = keras.optimizers.RMSprop(0.05, momentum=0.9, epsilon=1.0)
  step = tf.Variable(0, dtype=tf.int64)
  variables = loop.unique_trainable_variables(task_models)
  tasks = [loop.TrainTask(m.name, m, NUM_CLASSES, dataset, 4) for m in task_models]
  train_step = loop.make_train_step(strategy, tasks, optimizer, variables, step)
  iterators = tuple(iter(dataset) for _ in tasks)
  outputs = [train_step(iterators) for _ in range(steps)]
  return outputs, variables


def test_scale_bias_training_moves_only_the_patch():
  base = _tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="t",
                             num_classes=NUM_CLASSES)
  shared_before = {k: v.numpy().copy()
                   for k, v in patches.named_shared_variables(task).items()}
  own_before = {k: v.numpy().copy()
                for k, v in patches.named_patch_variables(task).items()}
  _train([task])
  for name, value in patches.named_shared_variables(task).items():
    np.testing.assert_array_equal(value.numpy(), shared_before[name], err_msg=name)
  moved = {name for name, value in patches.named_patch_variables(task).items()
           if not np.array_equal(value.numpy(), own_before[name])}
  # Gammas, the head and the task's own BN statistics (training-mode BN) move.
  assert {"bn_Conv1/gamma", "bn_Conv1/moving_mean", "logits/kernel"} <= moved
  # The 17 project_BN betas get an exactly zero gradient (see DESIGN.md).
  unmoved = set(own_before) - moved
  assert all("project_BN/beta" in name for name in unmoved), sorted(unmoved)


def test_a_step_over_two_tasks_trains_both_heads_and_reports_each():
  base = _tiny_base()
  first = patches.apply_patch(base, "logits", task="a", num_classes=NUM_CLASSES)
  second = patches.apply_patch(base, "logits", task="b", num_classes=NUM_CLASSES)
  before = [first.get_layer("logits__a").kernel.numpy().copy(),
            second.get_layer("logits__b").kernel.numpy().copy()]
  outputs, variables = _train([first, second], steps=1)
  assert len(variables) == 4  # Two heads' kernels and biases; the base is frozen.
  assert {"a/loss_sum", "a/correct", "a/count", "b/loss_sum", "weight_decay"} <= set(outputs[0])
  after = [first.get_layer("logits__a").kernel.numpy(),
           second.get_layer("logits__b").kernel.numpy()]
  for old, new in zip(before, after):
    assert not np.array_equal(old, new)
  metrics = progress.MetricAccumulator(["a", "b"])
  step_outputs = {k: v.numpy() for k, v in outputs[0].items()}
  metrics.add(step_outputs, seconds=9.0, timed=False)  # E.g. the tracing step.
  metrics.add(step_outputs, seconds=0.5)
  result = metrics.result()
  assert metrics.steps == 2
  assert {"train/a/accuracy", "train/b/loss", "train/loss"} <= set(result)
  assert result["images_per_sec"] == pytest.approx(8 / 0.5)


def test_set_bn_momentum_touches_only_training_mode_layers():
  base = _tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="t",
                             num_classes=NUM_CLASSES)
  changed = train.set_bn_momentum(task, 0.9)
  assert changed == 52  # Every BN layer of MobileNetV2 has a task copy.
  assert all(l.momentum == 0.999 for l in base.layers
             if isinstance(l, keras.layers.BatchNormalization))
