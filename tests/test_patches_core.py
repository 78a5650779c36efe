"""Tests of the patch injection pass: sharing, identity at injection, training isolation."""

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import calibration
from k4p1 import models
from k4p1 import patches

ALL_SPECS = ["logits", "scale_bias+logits", "scale+logits", "bias+logits",
             "depthwise+logits", "scale_bias+depthwise+logits", "full"]


def tiny_base(seed=0):
  """A tiny MobileNetV2 whose BN statistics are calibrated, like a trained one's."""
  keras.utils.set_random_seed(seed)
  base = models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35)
  calibration.calibrate_batchnorm(base, images(32, seed=seed + 100))
  return base


def images(n=8, size=32, seed=0):
  return np.random.RandomState(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


def train_steps(model, x, y, steps=3):
  optimizer = keras.optimizers.RMSprop(learning_rate=0.05)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  for _ in range(steps):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))


def snapshot(variables):
  return [v.numpy().copy() for v in variables]


def zero_gradient_by_design(key):
  # MobileNetV2's project BN betas feed only (via a 1x1 conv) a training-mode
  # BN that subtracts the batch mean: their gradient is exactly zero.
  return key.endswith("_project_BN/beta")


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_injection_keeps_outputs_and_training_moves_only_the_patch(spec):
  base = tiny_base()
  head = None if "logits" in spec or spec == "full" else keras.layers.Dense(4)
  task = patches.apply_patch(base, spec, task="a", num_classes=4 if head is None else None,
                             head=head)
  x = images()
  info = patches.patch_info(task)
  reference = info.head(base(x, training=False))
  np.testing.assert_array_equal(task(x, training=False).numpy(), reference.numpy())

  shared = patches.named_shared_variables(task)
  own = patches.named_patch_variables(task)
  assert shared or spec == "full"
  shared_before = snapshot(shared.values())
  own_before = {k: v.numpy().copy() for k, v in own.items()}
  train_steps(task, x, np.arange(8) % 4)

  for before, variable in zip(shared_before, shared.values()):
    np.testing.assert_array_equal(variable.numpy(), before, err_msg=variable.path)
  trainable_ids = {id(v) for v in task.trainable_variables}
  assert trainable_ids == {id(v) for v in own.values() if v.trainable}
  for key, variable in own.items():
    moved = not np.array_equal(variable.numpy(), own_before[key])
    if variable.trainable and not zero_gradient_by_design(key):
      assert moved, f"{spec}: patch variable {key} did not move"
    elif not variable.trainable and "moving" not in variable.name:
      assert not moved, f"{spec}: variable {key} is frozen but moved"


def test_patch_bn_statistics_are_the_tasks_own_and_shared_bn_is_frozen():
  base = tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="a", num_classes=3)
  stats = {k: v for k, v in patches.named_patch_variables(task).items() if "moving" in k}
  assert len(stats) == 2 * sum(isinstance(l, keras.layers.BatchNormalization)
                               for l in base.layers)
  before = {k: v.numpy().copy() for k, v in stats.items()}
  base_stats = {l.name: l.moving_mean.numpy().copy() for l in base.layers
                if isinstance(l, keras.layers.BatchNormalization)}
  train_steps(task, images(), np.arange(8) % 3, steps=1)
  assert all(not np.array_equal(stats[k].numpy(), before[k]) for k in stats)
  for name, mean in base_stats.items():
    np.testing.assert_array_equal(base.get_layer(name).moving_mean.numpy(), mean)


def test_depthwise_patch_runs_shared_bn_in_inference_mode():
  base = tiny_base()
  task = patches.apply_patch(base, "depthwise+logits", task="a", num_classes=3)
  x = images()
  # With frozen (shared) BN, training=True changes nothing but the patch's role.
  np.testing.assert_array_equal(task(x, training=True).numpy(),
                                task(x, training=False).numpy())


def test_frozen_bn_stats_train_gammas_but_keep_base_statistics():
  base = tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="a", num_classes=3,
                             bn_stats="frozen")
  own = patches.named_patch_variables(task)
  stats_before = {k: v.numpy().copy() for k, v in own.items() if "moving" in k}
  gamma_before = own["bn_Conv1/gamma"].numpy().copy()
  x = images()
  # Frozen statistics: training mode normalises exactly like inference mode.
  np.testing.assert_array_equal(task(x, training=True).numpy(),
                                task(x, training=False).numpy())
  train_steps(task, x, np.arange(8) % 3)
  for k, before in stats_before.items():
    np.testing.assert_array_equal(own[k].numpy(), before)
  assert not np.array_equal(own["bn_Conv1/gamma"].numpy(), gamma_before)
  assert isinstance(task.get_layer("bn_Conv1__a"), patches.FrozenStatsBatchNormalization)


def test_tasks_share_base_variables_by_identity_and_stay_isolated():
  base = tiny_base()
  task_a = patches.apply_patch(base, "scale_bias+depthwise+logits", task="a", num_classes=3)
  task_b = patches.apply_patch(base, "scale_bias+depthwise+logits", task="b", num_classes=5)
  conv = base.get_layer("Conv1")
  assert task_a.get_layer("Conv1") is conv and task_b.get_layer("Conv1") is conv
  assert task_a.get_layer("bn_Conv1__a") is not task_b.get_layer("bn_Conv1__b")
  shared_a = patches.shared_variables(task_a)
  assert {id(v) for v in shared_a} == {id(v) for v in patches.shared_variables(task_b)}

  x = images()
  b_outputs = task_b(x, training=False).numpy()
  b_patch = snapshot(patches.patch_variables(task_b))
  train_steps(task_a, x, np.arange(8) % 3)
  np.testing.assert_array_equal(task_b(x, training=False).numpy(), b_outputs)
  for before, variable in zip(b_patch, patches.patch_variables(task_b)):
    np.testing.assert_array_equal(variable.numpy(), before)


def test_full_shares_nothing_and_counts_everything():
  base = tiny_base()
  task = patches.apply_patch(base, "full", task="a", num_classes=3)
  assert not patches.shared_variables(task)
  counts = patches.count_params(task)
  assert counts["shared"] == 0
  assert counts["patch_stored"] == base.count_params() + task.layers[-1].count_params()


def test_nested_functional_model_is_patched_inside():
  keras.utils.set_random_seed(1)
  inner_in = keras.Input((8, 8, 4))
  h = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(inner_in)
  h = keras.layers.BatchNormalization(name="bn_inner")(h)
  inner = keras.Model(inner_in, h, name="inner")
  outer_in = keras.Input((8, 8, 3))
  h = keras.layers.Conv2D(4, 1, name="stem")(outer_in)
  h = inner(h)
  h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
  base = keras.Model(outer_in, h, name="custom")
  # Non-trivial BN statistics so that a wrong BN mode would show.
  bn = inner.get_layer("bn_inner")
  bn.moving_mean.assign(np.full(4, 0.3, "float32"))
  bn.moving_variance.assign(np.full(4, 2.0, "float32"))

  task = patches.apply_patch(base, "scale_bias+depthwise+logits", task="t", num_classes=2)
  assert set(patches.patch_info(task).patch_layers) == {"dw", "bn_inner"}
  x = np.random.RandomState(0).normal(size=(4, 8, 8, 3)).astype("float32")
  reference = patches.patch_info(task).head(base(x))
  np.testing.assert_array_equal(task(x).numpy(), reference.numpy())
  assert patches.shared_variables(task)[0] is base.get_layer("stem").kernel


def test_shared_head_is_shared_and_not_counted_as_patch():
  base = tiny_base()
  head = keras.layers.Dense(3, name="shared_head")
  one = patches.apply_patch(base, "scale_bias", task="r1", head=head)
  two = patches.apply_patch(base, "scale_bias", task="r2", head=head)
  assert one.layers[-1] is two.layers[-1] is head
  assert any(v is head.kernel for v in patches.shared_variables(one))
  assert all(v is not head.kernel for v in patches.patch_variables(one))


def test_set_shared_trainable_unfreezes_the_base():
  base = tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="a", num_classes=3)
  n_patch = len(task.trainable_variables)
  patches.set_shared_trainable([task], True)
  assert len(task.trainable_variables) > n_patch
  patches.set_shared_trainable([task], False)
  assert len(task.trainable_variables) == n_patch


def test_patch_info_is_not_tracked_by_keras_or_checkpoints(tmp_path):
  base = tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="a", num_classes=3)
  assert patches.patch_info(task).base is base
  # The info holds the base and layers; none of them may become extra weights
  # or checkpoint dependencies of the task model.
  layer_weights = [id(v) for layer in task.layers for v in layer.weights]
  assert sorted(id(v) for v in task.weights) == sorted(layer_weights)
  prefix = tf.train.Checkpoint(model=task).write(str(tmp_path / "ckpt"))
  names = [name for name, _ in tf.train.list_variables(prefix)]
  assert len(names) == len(task.weights) + 1  # + save_counter.
  assert not [name for name in names if "patch_info" in name]


def test_task_model_is_garbage_collected_after_del():
  base = tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="a", num_classes=3)
  task(images(), training=True)
  assert patches.patch_variables(task)
  ref = weakref.ref(task)
  del task
  gc.collect()
  assert ref() is None, "something still holds the task model"
  # The base outlives its tasks and takes new ones.
  again = patches.apply_patch(base, "scale_bias+logits", task="a", num_classes=3)
  assert patches.patch_info(again).task == "a"


def test_patch_info_of_an_unpatched_model_is_a_clear_error():
  base = tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="a", num_classes=3)
  # A clone is a new model: it was not made by apply_patch either.
  for model in (base, keras.models.clone_model(task)):
    with pytest.raises(ValueError, match=f"Model '{model.name}' was not made by "
                       r"k4p1.patches.apply_patch \(or load_patch\)"):
      patches.patch_info(model)
    with pytest.raises(ValueError, match="was not made by"):
      patches.patch_variables(model)
  patches.set_bn_statistics(base, {"method": "precise_bn"})  # No-op, no error.
  assert patches.patch_info(task).bn_statistics == {"method": "moving_average"}


@pytest.mark.parametrize("text, expected", [
    ("scale_bias+logits", "logits+scale_bias"),
    ("logits+depthwise+scale_bias", "logits+scale_bias+depthwise"),
    ("scale+bias+logits", "logits+scale_bias"),
    ("full", "full"),
    ("full+logits", "full"),
    (" bias + logits ", "logits+bias"),
])
def test_spec_parse_normalises(text, expected):
  assert str(patches.PatchSpec.parse(text)) == expected
  assert patches.PatchSpec.parse(expected) == patches.PatchSpec.parse(text)


@pytest.mark.parametrize("text, fragment", [
    ("scale_bais", "'scale_bais'"),
    ("scale_bais+logits", "Did you mean 'scale_bias'"),
    ("", "Empty patch spec"),
    ("  ", "Empty patch spec"),
    ("full+depthwise", "'full' alone"),
])
def test_bad_specs_name_the_kind_and_the_choices(text, fragment):
  with pytest.raises(ValueError) as e:
    patches.PatchSpec.parse(text)
  assert fragment in str(e.value)
  assert ("valid kinds: logits, stats, scale_bias, scale, bias, depthwise, taps, lora, "
          "full") in str(e.value)


def test_kind_matching_no_layer_names_kind_model_and_choices():
  keras.utils.set_random_seed(0)
  inception = models.build_backbone("inception_v3", 75, weights=None)
  with pytest.raises(ValueError) as e:
    patches.apply_patch(inception, "depthwise+logits", task="t", num_classes=2)
  message = str(e.value)
  assert "'depthwise'" in message and "'inception_v3'" in message
  assert "Valid kinds for this model: logits, stats, scale_bias, bias, taps, lora, full" in message
  with pytest.raises(ValueError, match="add_missing_scales=True"):
    patches.apply_patch(inception, "scale+logits", task="t", num_classes=2)


def test_inception_added_scales_keep_outputs():
  keras.utils.set_random_seed(0)
  inception = models.build_backbone("inception_v3", 75, weights=None)
  task = patches.apply_patch(inception, "scale_bias+logits", task="t", num_classes=2,
                             add_missing_scales=True)
  x = np.random.RandomState(0).uniform(-1, 1, (2, 75, 75, 3)).astype("float32")
  reference = patches.patch_info(task).head(inception(x))
  np.testing.assert_array_equal(task(x).numpy(), reference.numpy())
  gammas = [k for k in patches.named_patch_variables(task) if k.endswith("/gamma")]
  assert len(gammas) == 94


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(task="a/b", num_classes=2), "Invalid task name"),
    (dict(task="mnist5k:0-4", num_classes=2), "'mnist5k:0-4' -> 'mnist5k_0-4'"),
    (dict(task="digits@48", num_classes=2), "Invalid task name"),
    (dict(task="a", num_classes=0), "num_classes=0"),
    (dict(task="a", num_classes=2, bn_stats="moving"), "valid choices: task, frozen"),
    (dict(task="a", num_classes=2, head=keras.layers.Dense(2)), "do not also pass head"),
])
def test_bad_arguments_raise_clear_errors(kwargs, fragment):
  with pytest.raises(ValueError, match=fragment):
    patches.apply_patch(tiny_base(), "scale_bias+logits", **kwargs)


def test_spec_without_logits_needs_a_head():
  with pytest.raises(ValueError, match="pass head="):
    patches.apply_patch(tiny_base(), "scale_bias", task="a")


def test_base_without_feature_vector_is_rejected():
  base = models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35)
  unpooled = keras.Model(base.input, base.get_layer("out_relu").output)
  with pytest.raises(ValueError, match="pooling='avg'"):
    patches.apply_patch(unpooled, "logits", task="a", num_classes=2)
