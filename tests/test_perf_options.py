"""Speed options: feature caching, mixed precision, XLA auto, device prefetch,
and which gradient ops a patch step really runs (from a profiler trace)."""

import collections
import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from k4p1 import data
from k4p1 import models
from k4p1 import patches
from k4p1 import train
from k4p1.train import features_cache
from k4p1.train import loop
from k4p1.train import performance

SIZE, BATCH, CLASSES = 32, 8, 4


def _task(spec, seed=0):
  keras.utils.set_random_seed(seed)
  base = models.build_backbone("mobilenet_v2", SIZE, weights=None, alpha=0.35)
  return patches.apply_patch(base, spec, task="t", num_classes=CLASSES)


def _images(count, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.uniform(-1, 1, (count, SIZE, SIZE, 3)).astype(np.float32),
          rng.integers(0, CLASSES, count).astype(np.int32))


def _train(model, dataset, steps, optimizer=None):
  variables = loop.unique_trainable_variables([model])
  optimizer = optimizer or train.build_optimizer("rmsprop", 0.01)
  optimizer.build(variables)
  train_step = loop.make_train_step(
      tf.distribute.get_strategy(),
      [loop.TrainTask("t", model, CLASSES, dataset, BATCH)], optimizer,
      variables, tf.Variable(0, dtype=tf.int64))
  iterators = (iter(dataset),)
  return [train_step(iterators) for _ in range(steps)]


def test_cached_features_train_the_same_head_as_images():
  images, labels = _images(3 * BATCH)
  task = _task("logits")
  head = patches.patch_info(task).head
  initial = [v.numpy().copy() for v in head.weights]
  # Uncached: the training step on the images, in a fixed order (no
  # augmentation), three steps.
  image_ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(BATCH)
  _train(task, image_ds.repeat(), 3, train.build_optimizer("rmsprop", 1.0))
  expected = [v.numpy().copy() for v in head.weights]
  for v, value in zip(head.weights, initial):
    v.assign(value)
  # Cached: features computed once, the same batches in the same order.
  feature_model, head_model = features_cache.split_logits_model(task)
  features, cached_labels = features_cache.extract_features(feature_model,
                                                            image_ds)
  assert features.shape == (3 * BATCH, feature_model.output.shape[-1])
  np.testing.assert_array_equal(cached_labels, labels)
  feature_ds = features_cache.cached_dataset(features, cached_labels, BATCH,
                                             shuffle=False)
  _train(head_model, feature_ds, 3, train.build_optimizer("rmsprop", 1.0))
  actual = [v.numpy() for v in head.weights]
  for a, e, i in zip(actual, expected, initial):
    update = np.linalg.norm(e - i)
    assert update > 0  # The head trained.
    assert np.linalg.norm(a - e) <= 1e-3 * update


def test_cache_features_refuses_patches_that_train_the_backbone():
  with pytest.raises(ValueError, match="needs patch 'logits'"):
    features_cache.split_logits_model(_task("scale_bias+logits"))
  with pytest.raises(ValueError, match="cache_features needs patch 'logits'"):
    train.check_config(train.RunConfig(workdir="w", dataset="cifar100",
                                       patch="scale_bias+logits",
                                       cache_features=True))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_two_finite_steps(policy):
  previous = performance.set_mixed_precision(policy)
  try:
    task = _task("scale_bias+logits")
    optimizer = performance.wrap_optimizer(
        train.build_optimizer("rmsprop", 0.01), policy)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == (
        policy == "mixed_float16")
    images, labels = _images(BATCH)
    head = patches.patch_info(task).head
    before = head.kernel.numpy().copy()
    outputs = _train(task, tf.data.Dataset.from_tensors((images, labels)).repeat(),
                     2, optimizer)
    logits_dtype = keras.backend.standardize_dtype(task(images).dtype)
  finally:
    performance.set_mixed_precision(
        "none" if previous == "float32" else previous)
  assert logits_dtype != "float32"  # The layers did compute in half precision.
  for out in outputs:
    assert np.isfinite(out["t/loss_sum"].numpy())
  assert all(v.dtype == "float32" for v in task.trainable_variables)
  if policy == "mixed_float16":
    # A step whose scaled gradients overflow is skipped and halves the scale.
    moved = not np.array_equal(head.kernel.numpy(), before)
    assert moved or float(optimizer.dynamic_scale) < optimizer.initial_scale
  else:
    assert not np.array_equal(head.kernel.numpy(), before)


def test_jit_compile_auto_is_off_on_cpu():
  assert not performance.has_accelerator()
  assert performance.resolve_jit_compile("auto") is False
  assert performance.resolve_jit_compile("true") is True
  assert train.resolve(train.RunConfig(workdir="w", dataset="cifar100")).config.jit_compile is False
  with pytest.raises(ValueError, match="valid choices: auto, true, false"):
    performance.resolve_jit_compile("sometimes")


def test_prefetch_to_device_input_options_under_a_strategy():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  options = performance.input_options()
  assert options.experimental_fetch_to_device
  ds = data.build_dataset("mnist5k", "train", global_batch_size=4, image_size=32,
                          training=True, strategy=strategy,
                          input_options=options, architecture="mobilenet_v2")
  images, _ = next(iter(ds))
  values = strategy.experimental_local_results(images)
  assert [v.shape[0] for v in values] == [2, 2]
  assert sorted(v.device.split("/")[-1] for v in values) == ["device:CPU:0",
                                                             "device:CPU:1"]


def _executed_op_types(train_step, iterators, logdir):
  """Op types that ran during one profiled step (after tracing)."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  train_step(iterators)
  tf.profiler.experimental.start(logdir)
  try:
    train_step(iterators)["t/count"].numpy()
  finally:
    tf.profiler.experimental.stop()
  space = xplane_pb2.XSpace()
  with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
    space.ParseFromString(f.read())
  types = collections.Counter()
  for plane in space.planes:
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        if ":" in name:
          types[name.rsplit(":", 1)[1]] += 1
  return types


@pytest.mark.slow
def test_frozen_kernels_get_no_weight_gradient_ops_at_run_time(tmp_path):
  """The traced graph holds filter-gradient ops (TF's conv gradient makes both
  outputs), but they are pruned before running: a profiled scale_bias+logits
  step runs none, while a full step runs one per convolution."""
  images, labels = _images(BATCH)
  dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
  ran = {}
  for spec in ("scale_bias+logits", "full"):
    task = _task(spec)
    variables = loop.unique_trainable_variables([task])
    optimizer = train.build_optimizer("rmsprop", 0.01)
    optimizer.build(variables)
    train_step = loop.make_train_step(
        tf.distribute.get_strategy(),
        [loop.TrainTask("t", task, CLASSES, dataset, BATCH)], optimizer,
        variables, tf.Variable(0, dtype=tf.int64))
    ran[spec] = _executed_op_types(train_step, (iter(dataset),),
                                   str(tmp_path / spec.replace("+", "_")))

  def count(types, fragment):
    return sum(n for t, n in types.items() if fragment in t)

  for fragment in ("Conv2DBackpropFilter", "DepthwiseConv2dNativeBackpropFilter"):
    assert count(ran["full"], fragment) > 0, fragment
    assert count(ran["scale_bias+logits"], fragment) == 0, fragment
  # Training-mode BN runs fused: one forward and one gradient op per layer.
  assert count(ran["scale_bias+logits"], "FusedBatchNormGradV3") > 0
  assert count(ran["scale_bias+logits"], "SquaredDifference") == 0
