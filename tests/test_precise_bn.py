"""PreciseBN (`k4p1.train.precise_bn`): exact statistics, right layers, any strategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import calibration
from k4p1 import data
from k4p1 import models
from k4p1 import patches
from k4p1 import train
from k4p1.eval import accuracy as accuracy_lib
from k4p1.train import precise_bn


def tiny_base(seed=0, size=32):
  keras.utils.set_random_seed(seed)
  return models.build_backbone("mobilenet_v2", size, weights=None, alpha=0.35)


def random_images(count, size=32, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(count, size, size, 3)).astype("float32")


def snapshot(variables):
  return {id(v): v.numpy().copy() for v in variables}


def conv1_output(base, images):
  return keras.Model(base.input, base.get_layer("Conv1").output)(images).numpy()


def test_first_layer_gets_the_exact_population_statistics():
  base = tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="t", num_classes=3)
  images = random_images(70)  # Two full batches of 32 and one of 6.
  dataset = tf.data.Dataset.from_tensor_slices(images).batch(32)
  record = precise_bn.update_bn_stats(task, dataset, num_batches=None)
  assert record == {"method": "precise_bn", "layers": 52, "batches": 3}
  layer = precise_bn.training_mode_bn_layers([task])[0]
  assert layer.name == "bn_Conv1__t"
  # Its input does not depend on other BN layers: a direct computation over
  # all 70 examples, every example weighted equally.
  y = conv1_output(base, images).astype(np.float64).reshape(-1, 16)
  np.testing.assert_allclose(layer.moving_mean.numpy(), y.mean(0), atol=1e-6)
  np.testing.assert_allclose(layer.moving_variance.numpy(), y.var(0),
                             rtol=1e-5, atol=1e-6)
  assert patches.patch_info(task).bn_statistics["method"] == "precise_bn"


def test_any_functional_model_and_a_bn_layer_on_features():
  """A BN layer on 2-D features takes the unfused path: same exact statistics."""
  inputs = keras.Input((5,))
  hidden = keras.layers.Dense(4, name="dense")(inputs)
  outputs = keras.layers.Dense(2, name="head")(
      keras.layers.BatchNormalization(name="bn")(hidden))
  model = keras.Model(inputs, outputs)
  x = random_images(30)[:, 0, 0, :].repeat(2, axis=1)[:, :5]
  precise_bn.update_bn_stats(model, tf.data.Dataset.from_tensor_slices(x).batch(7))
  y = model.get_layer("dense")(x).numpy().astype(np.float64)
  bn = model.get_layer("bn")
  np.testing.assert_allclose(bn.moving_mean.numpy(), y.mean(0), atol=1e-6)
  np.testing.assert_allclose(bn.moving_variance.numpy(), y.var(0), rtol=1e-5)


def test_a_sequential_model_and_a_refused_subclassed_one():
  model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="dense"),
                            keras.layers.BatchNormalization(name="bn")])
  x = random_images(30)[:, 0, 0, :].repeat(2, axis=1)[:, :5]
  dataset = tf.data.Dataset.from_tensor_slices(x).batch(7)
  precise_bn.update_bn_stats(model, dataset)
  y = model.get_layer("dense")(x).numpy().astype(np.float64)
  np.testing.assert_allclose(model.get_layer("bn").moving_mean.numpy(), y.mean(0),
                             atol=1e-6)

  class Subclassed(keras.Model):

    def __init__(self):
      super().__init__(name="subclassed")
      self.bn = keras.layers.BatchNormalization()

    def call(self, x, training=None):
      return self.bn(x, training=training)

  subclassed = Subclassed()
  subclassed(x[:2])
  with pytest.raises(ValueError, match="not a functional or Sequential"):
    precise_bn.update_bn_stats(subclassed, dataset)


def test_only_training_mode_layers_of_the_given_models_change():
  base = tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="a", num_classes=3)
  other = patches.apply_patch(base, "scale_bias+logits", task="b", num_classes=3)
  frozen = patches.apply_patch(base, "scale_bias+logits", task="c", num_classes=3,
                               bn_stats="frozen")
  depthwise = patches.apply_patch(base, "depthwise+logits", task="d", num_classes=3)
  assert not precise_bn.training_mode_bn_layers([frozen, depthwise])
  targets = precise_bn.training_mode_bn_layers([task])
  moving = {id(v) for layer in targets
            for v in (layer.moving_mean, layer.moving_variance)}
  everything = {id(v): v for m in (base, task, other, frozen, depthwise)
                for v in m.weights}
  before = snapshot(everything.values())
  dataset = tf.data.Dataset.from_tensor_slices(random_images(40)).batch(20)
  precise_bn.update_bn_stats(task, dataset)
  for key, variable in everything.items():
    same = np.array_equal(before[key], variable.numpy())
    assert same == (key not in moving), variable.path
  # A frozen-statistics patch has nothing to update.
  assert precise_bn.update_bn_stats(frozen, dataset)["layers"] == 0


def test_a_shared_trained_layer_gets_every_tasks_batches():
  base = tiny_base()
  tasks = [patches.apply_patch(base, "logits", task=name, num_classes=2)
           for name in ("a", "b")]
  patches.set_shared_trainable(tasks, True)  # Multi-task, shared="trained".
  first, second = random_images(24, seed=1), 3.0 + random_images(40, seed=2)
  precise_bn.update_bn_stats(
      tasks, [tf.data.Dataset.from_tensor_slices(x).batch(8)
              for x in (first, second)], num_batches=None)
  shared = base.get_layer("bn_Conv1")
  y = conv1_output(base, np.concatenate([first, second]))
  y = y.astype(np.float64).reshape(-1, 16)
  np.testing.assert_allclose(shared.moving_mean.numpy(), y.mean(0), atol=1e-5)
  np.testing.assert_allclose(shared.moving_variance.numpy(), y.var(0),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_mirrored_statistics_equal_single_device_ones():
  images = random_images(64)
  single = patches.apply_patch(tiny_base(), "scale_bias+logits", task="t",
                               num_classes=3)
  precise_bn.update_bn_stats(
      single, tf.data.Dataset.from_tensor_slices(images).batch(8))
  strategy = train.build_strategy("mirrored")
  assert strategy.num_replicas_in_sync == 2
  with strategy.scope():
    mirrored = patches.apply_patch(tiny_base(), "scale_bias+logits", task="t",
                                   num_classes=3)
  # Global batch 16 split in two: each replica's batch is one batch of 8 above.
  dataset = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices(images).batch(16))
  precise_bn.update_bn_stats(mirrored, dataset, strategy=strategy)
  pairs = zip(precise_bn.training_mode_bn_layers([single]),
              precise_bn.training_mode_bn_layers([mirrored]))
  for one, two in pairs:
    for a, b in ((one.moving_mean, two.moving_mean),
                 (one.moving_variance, two.moving_variance)):
      replicas = [r.numpy() for r in strategy.experimental_local_results(b.value)]
      assert len(replicas) == 2
      np.testing.assert_array_equal(replicas[0], replicas[1])  # Identical copies.
      np.testing.assert_allclose(replicas[0], a.numpy(), rtol=1e-5, atol=1e-5)


def test_the_traced_pass_is_reused():
  task = patches.apply_patch(tiny_base(), "scale_bias+logits", task="t",
                             num_classes=3)
  dataset = tf.data.Dataset.from_tensor_slices(random_images(16)).batch(8)
  updater = precise_bn.PreciseBatchNorm([(task, dataset)], num_batches=1)
  first = updater.update()
  means = [l.moving_mean.numpy().copy() for l in updater.layers]
  assert updater.update() == first == {"method": "precise_bn", "layers": 52,
                                       "batches": 1}
  assert all(np.array_equal(m, l.moving_mean.numpy())
             for m, l in zip(means, updater.layers))
  # One trace per model, reused by the second update.
  assert sum(f.experimental_get_tracing_count()
             for f in updater._traced) == 1  # pylint: disable=protected-access


@pytest.fixture(scope="module")
def trained_from_scratch():
  """A tiny MobileNetV2 trained with `fit` for 120 steps, Keras' momentum 0.999.

  Its moving statistics still hold 0.999^120 = 89% of their initial values.
  """
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35)
  model = patches.apply_patch(base, "full", task="digits", num_classes=5)
  common = dict(global_batch_size=64, image_size=32, seed=0)
  train_ds = data.build_dataset("mnist5k:0-4", "train", training=True, **common, architecture="mobilenet_v2")
  model.compile(optimizer=keras.optimizers.Adam(2e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  # shuffle=False: the dataset shuffles itself (Keras warns otherwise).
  model.fit(train_ds, steps_per_epoch=120, epochs=1, verbose=0, shuffle=False)
  return model


def test_precise_bn_matches_direct_statistics_and_beats_moving_averages(
    trained_from_scratch):
  model = trained_from_scratch
  common = dict(global_batch_size=64, image_size=32, seed=0)
  eval_ds = data.build_dataset("mnist5k:0-4", "test", training=False, **common, architecture="mobilenet_v2")
  moving = accuracy_lib.evaluate_accuracy(model, eval_ds)["accuracy"]
  # Direct: every training image in one training-mode batch (momentum 0).
  images = np.concatenate([x for x, _ in data.build_dataset(
      "mnist5k:0-4", "train", training=False, **common, architecture="mobilenet_v2")])
  calibration.calibrate_batchnorm(model, images)
  direct = accuracy_lib.evaluate_accuracy(model, eval_ds)["accuracy"]
  bn_ds = data.build_dataset("mnist5k:0-4", "train", training=False,
                             shuffle=True, **common, architecture="mobilenet_v2")
  precise_bn.update_bn_stats(model, bn_ds)
  precise = accuracy_lib.evaluate_accuracy(model, eval_ds)["accuracy"]
  assert direct > 0.6, (moving, direct, precise)  # It learned (chance: 0.2).
  assert abs(precise - direct) <= 0.01, (moving, direct, precise)
  assert precise > moving + 0.2, (moving, direct, precise)


@pytest.mark.slow
def test_keras_callback_sets_statistics_during_fit():
  base = tiny_base()
  model = patches.apply_patch(base, "scale_bias+logits", task="t", num_classes=3)
  rng = np.random.default_rng(0)
  images = random_images(48)
  labels = rng.integers(0, 3, 48).astype("int32")
  train_ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
  callback = train.PreciseBN(train_ds, num_batches=3)
  model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  model.fit(train_ds, epochs=2, validation_data=train_ds, callbacks=[callback],
            verbose=0, shuffle=False)
  assert callback.last_update == {"method": "precise_bn", "layers": 52,
                                  "batches": 3}
  after_fit = [l.moving_variance.numpy().copy()
               for l in precise_bn.training_mode_bn_layers([model])]
  precise_bn.update_bn_stats(model, train_ds)  # Same weights, same data.
  for expected, layer in zip(after_fit, precise_bn.training_mode_bn_layers([model])):
    np.testing.assert_allclose(layer.moving_variance.numpy(), expected, rtol=1e-6)


def test_bad_precise_bn_batches_is_refused_early(tmp_path):
  with pytest.raises(ValueError, match="precise_bn_batches must be an integer >= 0"):
    train.check_config(train.RunConfig(workdir=str(tmp_path), dataset="digits",
                                       precise_bn_batches=-1))
