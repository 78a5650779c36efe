"""The `lora` patch kind: low-rank kernel residuals injected by the cloning pass.

Tiny bases (MobileNetV2 alpha 0.35 at 32 px, every architecture at a small
size): identity at injection in both modes, factor shapes and counts,
training isolation, patch files, and the one-task and K-task exports.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import calibration
from helpers.model_checks import assert_close, features_of
from k4p1 import architectures
from k4p1 import models
from k4p1 import patches
from k4p1 import train
from k4p1 import workdir as workdir_lib
from k4p1.patches import gates
from k4p1.patches import litert
from k4p1.patches import lora
from k4p1.report import cells
from k4p1.report import collect
from test_patches_core import images
from test_patches_core import snapshot
from test_patches_core import tiny_base
from test_patches_core import train_steps


@pytest.fixture(scope="module")
def base():
  return tiny_base()


def perturb(model, seed=1, close=()):
  """Random B factors (A keeps its init); gates of `close` below tau."""
  rng = np.random.default_rng(seed)
  for name, layer in gates.lora_layers(model).items():
    layer.lora_b.assign(rng.normal(0, 0.2, layer.lora_b.shape).astype("float32"))
  for name, layer in gates.gated_layers(model).items():
    if isinstance(layer, patches.GatedConv):
      layer.delta.assign(rng.normal(0, 0.05, layer.delta.shape).astype("float32"))
    layer.score.assign(0.05 if name in close else 0.2)


def lora_params(net, rank):
  """r * (k*k*C_in + C_out) over every Conv2D and Dense layer of `net`."""
  return sum(rank * (int(np.prod(l.kernel.shape[:-1])) + int(l.kernel.shape[-1]))
             for l in patches.leaf_layers(net)
             if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense)))


def _tiny(name):
  arch = architectures.get(name)
  keras.utils.set_random_seed(0)
  alpha = 0.35 if name == "mobilenet_v2" else 1.0
  size = max(arch.min_image_size, 32)
  net = models.build_backbone(name, size, weights=None, alpha=alpha)
  calibration.calibrate_batchnorm(net, images(16, size, seed=7))
  return net, size


def run_with_fixed_noise(net, fn):
  """`fn()` with the dropout masks of the previous call (EfficientNet's
  Dropout layers draw in training mode): every seed generator restarts."""
  generators = [l.seed_generator for l in patches.leaf_layers(net)
                if getattr(l, "seed_generator", None) is not None]
  states = [g.state.numpy().copy() for g in generators]
  out = fn()
  for generator, state in zip(generators, states):
    generator.state.assign(state)
  return out


@pytest.mark.parametrize("name", architectures.NAMES)
def test_injection_is_the_identity_in_both_modes_on_every_architecture(name):
  net, size = _tiny(name)
  x = images(4, size)
  model = patches.apply_patch(net, "lora+logits", task="t", num_classes=3)
  # Shared BN layers are frozen: inference mode under training=True too.
  for training in (False, True):
    expected = run_with_fixed_noise(net, lambda: net(x, training=training).numpy())
    np.testing.assert_array_equal(features_of(model)(x, training=training).numpy(),
                                  expected, err_msg=f"training={training}")
  wrapped = gates.lora_layers(model)
  targets = [l for l in patches.leaf_layers(net)
             if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
  assert sorted(wrapped) == sorted(l.name for l in targets) and wrapped
  assert not any(isinstance(l.base_layer, keras.layers.DepthwiseConv2D)
                 for l in wrapped.values())
  for layer in wrapped.values():  # The base's kernel, by identity; frozen.
    assert layer.base_layer.kernel is net.get_layer(layer.base_layer.name).kernel
    assert not layer.base_layer.trainable
  counts = patches.count_params(model)
  head = (int(net.outputs[0].shape[-1]) + 1) * 3
  assert counts["patch_trainable"] == counts["patch_stored"] == lora_params(net, 4) + head
  assert counts["shared"] == net.count_params()
  assert patches.describe_targets(net)["lora"] == {"layers": len(targets),
                                                   "trainable": lora_params(net, 4)}
  # With task BN (training mode: batch statistics), LoRA adds exactly nothing.
  sb = patches.apply_patch(net, "scale_bias+logits", task="s", num_classes=3)
  both = patches.apply_patch(net, "lora+scale_bias+logits", task="b", num_classes=3)
  for training in (False, True):
    expected = run_with_fixed_noise(
        net, lambda: features_of(sb)(x, training=training).numpy())
    np.testing.assert_array_equal(features_of(both)(x, training=training).numpy(),
                                  expected, err_msg=f"training={training}")


def test_factor_shapes_initialisation_and_scale(base):
  model = patches.apply_patch(base, "lora+logits", task="t", num_classes=3,
                              lora_rank=3, lora_alpha=6.0)
  layer = gates.lora_layers(model)["Conv1"]  # 3x3, 3 -> 16 channels.
  assert tuple(layer.lora_a.shape) == (3, 3, 3, 3)
  assert tuple(layer.lora_b.shape) == (3, 16)
  assert layer.residual_size() == 3 * (3 * 3 * 3 + 16)
  assert not np.any(layer.lora_b.numpy())
  a = layer.lora_a.numpy()  # Kaiming-uniform, a=sqrt(5): U(+-1/sqrt(fan_in)).
  bound = 1 / math.sqrt(27)
  assert np.abs(a).max() <= bound and np.abs(a).max() > 0.8 * bound
  big = gates.lora_layers(model)["Conv_1"]  # 1x1, 112 -> 1280: many draws.
  fan_in = int(np.prod(big.lora_a.shape[:-1]))
  np.testing.assert_allclose(big.lora_a.numpy().std(), 1 / math.sqrt(3 * fan_in),
                             rtol=0.1)  # U(-b, b) has std b / sqrt(3).
  assert layer.lora_a.dtype == layer.lora_b.dtype == "float32"
  assert (layer.scale, layer.alpha, layer.rank) == (2.0, 6.0, 3)
  perturb(model)
  kernel = layer.base_layer.kernel.numpy()
  merged = kernel + 2.0 * (a.reshape(-1, 3) @ layer.lora_b.numpy()).reshape(kernel.shape)
  np.testing.assert_allclose(layer.task_kernel().numpy(), merged, rtol=1e-6, atol=1e-7)
  info = patches.patch_info(model)
  assert (info.lora_rank, info.lora_alpha) == (3, 6.0)
  summary = patches.lora_summary(model)
  assert summary["layers"] == 35 and summary["by_layer_class"] == {"Conv2D": 35}
  assert summary["factor_params"] == lora_params(base, 3)


def test_factors_are_drawn_from_the_seed(base):
  def first_a(task):
    model = patches.apply_patch(base, "lora+logits", task=task, num_classes=3)
    return gates.lora_layers(model)["Conv1"].lora_a.numpy()
  keras.utils.set_random_seed(3)
  a = first_a("t")
  keras.utils.set_random_seed(3)
  np.testing.assert_array_equal(first_a("t"), a)
  assert not np.array_equal(first_a("u"), a)  # Each task its own draw.


def test_residual_path_equals_the_merged_kernel(base):
  x = images(4)
  model = patches.apply_patch(base, "lora+scale_bias+logits", task="t", num_classes=3)
  perturb(model)
  baked = patches.bake(model)  # Every factor merged into a plain kernel.
  assert not any(isinstance(l, lora.LoRALayer) for l in patches.leaf_layers(baked))
  expected = model(x, training=False).numpy()
  assert np.abs(expected - patches.apply_patch(
      base, "scale_bias+logits", task="u", num_classes=3)(x).numpy()).max() > 1e-3
  assert_close(baked(x, training=False).numpy(), expected)
  unmerged = gates.bake(model, merge_lora=False)
  assert unmerged is model  # Nothing to bake: the factors stay.


def test_dense_layers_of_the_base_get_factors_too():
  keras.utils.set_random_seed(0)
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
  x = keras.layers.GlobalAveragePooling2D()(x)
  x = keras.layers.Dense(6, activation="relu", name="dense")(x)
  net = keras.Model(inputs, x, name="small")
  model = patches.apply_patch(net, "lora+logits", task="t", num_classes=2,
                              lora_rank=2)
  layer = gates.lora_layers(model)["dense"]
  assert (tuple(layer.lora_a.shape), tuple(layer.lora_b.shape)) == ((4, 2), (2, 6))
  data = np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype("float32")
  np.testing.assert_array_equal(features_of(model)(data).numpy(), net(data).numpy())
  assert patches.count_params(model)["patch_trainable"] == (
      2 * (27 + 4) + 2 * (4 + 6) + 7 * 2)
  perturb(model)
  np.testing.assert_allclose(patches.bake(model)(data).numpy(), model(data).numpy(),
                             rtol=1e-5, atol=1e-6)


def test_depthwise_kernels_are_refused_with_the_reason(base):
  dw = next(l for l in patches.leaf_layers(base)
            if isinstance(l, keras.layers.DepthwiseConv2D))
  with pytest.raises(ValueError, match="r times the kernel"):
    lora.LoRALayer(dw, 4)
  model = patches.apply_patch(base, "lora+depthwise+logits", task="t", num_classes=3)
  info = patches.patch_info(model)
  assert isinstance(info.patch_layers[dw.name], keras.layers.DepthwiseConv2D)
  assert info.patch_layers[dw.name] is not dw  # The task's own kernel, whole.


@pytest.mark.parametrize("spec", ["lora+logits", "lora+scale_bias+depthwise+logits",
                                  "lora+taps+logits"])
def test_training_moves_only_the_patch(spec):
  net = tiny_base()
  before = [w.copy() for w in net.get_weights()]
  model = patches.apply_patch(net, spec, task="t", num_classes=4)
  shared = patches.named_shared_variables(model)
  shared_before = snapshot(shared.values())
  own = patches.named_patch_variables(model)
  own_before = {k: v.numpy().copy() for k, v in own.items()}
  train_steps(model, images(), np.arange(8) % 4)
  for value, variable in zip(shared_before, shared.values()):
    np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)
  for value, after in zip(before, net.get_weights()):
    np.testing.assert_array_equal(after, value)
  assert {id(v) for v in model.trainable_variables} == {
      id(v) for v in own.values() if v.trainable}
  for key, variable in own.items():
    moved = not np.array_equal(variable.numpy(), own_before[key])
    if variable.trainable and not key.endswith("_project_BN/beta"):
      assert moved, f"{spec}: {key} did not move"


@pytest.mark.parametrize("spec", ["lora+scale_bias+logits", "lora+taps+logits"])
def test_patch_file_round_trip_is_exact(spec, tmp_path):
  net = tiny_base()
  model = patches.apply_patch(net, spec, task="t", num_classes=3, lora_rank=3,
                              lora_alpha=1.5)
  closed = set(sorted(gates.gated_layers(model))[1::3])  # Conv1 stays open.
  perturb(model, close=closed)
  path = tmp_path / "t.safetensors"
  patches.save_patch(model, path)
  record, arrays = patches.read_patch_file(path)
  assert (record["lora_rank"], record["lora_alpha"]) == (3, 1.5)
  assert arrays["Conv1/lora_a"].shape == (3, 3, 3, 3)
  assert sum(a.size for a in arrays.values()) == patches.count_params(model)["patch_stored"]
  omitted = set(record["omitted_closed_residuals"])
  assert omitted == {f"{n}/{v}" for n in closed
                     for v in gates.gated_layers(model)[n].RESIDUALS}
  x = images(4)
  loaded = patches.load_patch(tiny_base(), path)  # A fresh base, same weights.
  np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
  originals = patches.named_patch_variables(model)
  for key, variable in patches.named_patch_variables(loaded).items():
    if key in omitted:
      assert not np.any(variable.numpy())  # A closed gate: exactly the base.
    else:
      np.testing.assert_array_equal(variable.numpy(), originals[key].numpy())
  info = patches.patch_info(loaded)
  assert (info.lora_rank, info.lora_alpha) == (3, 1.5)


def test_lora_behind_taps_gates(base):
  x = images(4)
  model = patches.apply_patch(base, "lora+taps+logits", task="t", num_classes=3)
  gated = gates.gated_layers(model)
  kinds = {type(l).__name__ for l in gated.values()}
  assert kinds == {"GatedLoRA", "GatedConv"}
  assert all(isinstance(l.base_layer, keras.layers.DepthwiseConv2D)
             for l in gated.values() if isinstance(l, patches.GatedConv))
  layer = gated["Conv1"]
  perturb(model)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(model(x, training=True)))
  assert float(tf.abs(tape.gradient(loss, layer.score))) > 0  # Straight-through.
  summary = patches.taps_summary(model)
  assert summary["gated_layers"] == 52
  assert summary["gated_params"] == lora_params(base, 4) + sum(
      l.residual_size() for l in gated.values() if isinstance(l, patches.GatedConv))
  perturb(model, close=set(gated))  # Every gate closed: the base, exactly.
  np.testing.assert_array_equal(features_of(model)(x).numpy(), base(x).numpy())
  perturb(model, close=set(sorted(gated)[1:]))
  baked = patches.bake(model)
  assert not any(isinstance(l, gates.GATED) for l in patches.leaf_layers(baked))
  assert_close(baked(x).numpy(), model(x).numpy())
  counts = patches.count_params(model)
  assert counts["patch_stored"] < counts["patch_trainable"]


def test_exports_match_the_task_models(base, tmp_path):
  """One-task LiteRT merges; the K-task LiteRT file and SavedModel do not."""
  x = images(5, seed=3)
  specs = (("a", "lora+logits", 2, 3), ("b", "lora+scale_bias+logits", 4, 5),
           ("c", "scale_bias+logits", None, 2))
  models_ = []
  for seed, (task, spec, rank, classes) in enumerate(specs):
    models_.append(patches.apply_patch(base, spec, task=task, num_classes=classes,
                                       **({"lora_rank": rank} if rank else {})))
    perturb(models_[-1], seed)
    for variable in patches.patch_variables(models_[-1]):
      if "gamma" in variable.path or "logits" in variable.path:
        variable.assign(variable.numpy() * 1.1 + 0.01)
  expected = [m(x, training=False).numpy() for m in models_]
  one = str(tmp_path / "b.tflite")
  litert.export_task(models_[1], one)
  assert_close(litert.run(one, x), expected[1])
  many = str(tmp_path / "tasks.tflite")
  litert.export_multitask(models_, many)
  served = litert.LiteRTModel(many)
  for task_id, want in enumerate(expected):
    assert_close(served.predict(x, task=task_id), want)
  # The factors are stored, not K merged kernels: far below one base per task.
  base_bytes = 4 * base.count_params()
  assert tf.io.gfile.stat(many).length < tf.io.gfile.stat(one).length + 0.5 * base_bytes

  path = str(tmp_path / "export")
  patches.export_multitask(models_, path)
  saved = tf.saved_model.load(path)
  ids = np.array([1, 0, 2, 1, 0], "int32")
  logits = saved.serve(tf.constant(x), tf.constant(ids)).numpy()
  for row, task_id in enumerate(ids):
    classes = expected[task_id].shape[1]
    assert_close(logits[row, :classes], expected[task_id][row])
  unique = {id(v): v for v in saved.variables}.values()  # Listed per model.
  stored = sum(int(np.prod(v.shape)) for v in unique)
  own = sum(int(np.prod(v.shape)) for m in models_ for v in patches.patch_variables(m))
  assert stored == base.count_params() + own  # One base, unmerged factors.


@pytest.mark.parametrize("overrides,message", [
    (dict(lora_rank=0), r"lora_rank must be an integer >= 1, got 0"),
    (dict(lora_rank=2.5), r"lora_rank must be an integer >= 1"),
    (dict(lora_alpha=0.0), r"lora_alpha must be a finite number > 0"),
    (dict(lora_alpha=float("nan")), r"lora_alpha must be a finite number > 0"),
    (dict(patch="lora+scale_bias+logits", tasks=("mnist5k:0-4", "mnist5k:5-9"),
          dataset=None, shared="trained"), "shared='frozen' with lora"),
])
def test_bad_lora_settings_fail_before_any_work(overrides, message, tmp_path):
  config = train.RunConfig(workdir=str(tmp_path / "w"), dataset="mnist5k",
                           weights=None, patch="lora+logits").replace(**overrides)
  with pytest.raises(ValueError, match=message):
    train.resolve(config)
  assert not (tmp_path / "w").exists()


def test_apply_patch_checks_the_settings(base):
  with pytest.raises(ValueError, match="lora_rank must be an integer >= 1"):
    patches.apply_patch(base, "lora+logits", task="t", num_classes=2, lora_rank=0)
  with pytest.raises(ValueError, match="lora_alpha must be a finite number > 0"):
    patches.apply_patch(base, "lora+logits", task="t", num_classes=2, lora_alpha=-1)
  assert patches.PatchSpec.parse("logits+lora+scale_bias").kinds == {
      "logits", "lora", "scale_bias"}
  assert str(patches.PatchSpec.parse("taps+lora+logits")) == "logits+taps+lora"
  with pytest.raises(ValueError, match="'full' already trains"):
    patches.PatchSpec.parse("full+lora")


def test_workdirs_from_before_the_lora_settings_resume(tmp_path):
  config = train.resolve(train.RunConfig(workdir=str(tmp_path), dataset="cifar100",
                                         patch="lora+logits")).config
  old = {k: v for k, v in config.to_dict().items()
         if k not in ("lora_rank", "lora_alpha")}
  workdir_lib.write_json_atomic(workdir_lib.config_path(str(tmp_path)), {"config": old})
  defaults = train.RunConfig().to_dict()
  assert workdir_lib.check_rerun(str(tmp_path), config.to_dict(),
                                 train.IDENTITY_FIELDS, defaults)
  with pytest.raises(train.WorkdirMismatchError, match="lora_rank: 4 there, 8 now"):
    workdir_lib.check_rerun(str(tmp_path), config.replace(lora_rank=8).to_dict(),
                            train.IDENTITY_FIELDS, defaults)


def test_the_report_knows_the_kind():
  assert collect.patch_kinds("lora+logits") in cells.PATCH_ORDER
  assert collect.patch_kinds("logits+scale_bias+taps+lora") in cells.PATCH_ORDER
  assert cells.KIND_SETTINGS["lora_rank"] == "lora"
  runs = [collect.RunResult(
      workdir=".", experiment="transfer", model="mobilenet_v2", image_size=32,
      patch=patch, tasks={}, params={}, command="", config=config,
      system_params=None, separate_models_params=None, path="results.json")
          for patch, config in (("lora+logits", {"lora_rank": 4}),
                                ("lora+logits", {"lora_rank": 8, "lora_alpha": 8.0}),
                                ("logits", {}))]
  varying, shared = cells.split_settings(runs, ["lora_rank", "lora_alpha"])
  assert varying == ("lora_rank", "lora_alpha")  # alpha unset: "lora_rank" (= the rank).
  assert cells.row_key(runs[0], varying).label == (
      "logits+lora (lora_rank=4, lora_alpha=lora_rank)")
  assert cells.row_key(runs[1], varying).label == "logits+lora (lora_rank=8, lora_alpha=8)"
  assert cells.row_key(runs[2], varying).label == "logits"
  assert not shared
  assert architectures.get("resnet50").targets("lora").startswith("every Conv2D")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_float32_factors_and_the_identity(policy):
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(policy)
  try:
    keras.utils.set_random_seed(0)
    net = models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35)
    x = images(4)
    model = patches.apply_patch(net, "lora+scale_bias+logits", task="t", num_classes=3)
    layer = gates.lora_layers(model)["Conv1"]
    assert layer.lora_a.dtype == layer.lora_b.dtype == "float32"
    assert layer.compute_dtype == policy.split("_")[1]
    np.testing.assert_array_equal(features_of(model)(x, training=False).numpy(),
                                  net(x, training=False).numpy())
    perturb(model)
    out = model(x, training=False).numpy()
    assert np.all(np.isfinite(out))
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.cast(model(x, training=True), tf.float32))
    grad = tape.gradient(loss, layer.lora_a)
    assert grad.dtype == tf.float32 and float(tf.reduce_max(tf.abs(grad))) > 0
  finally:
    keras.config.set_dtype_policy(previous)


def test_checkpoints_hold_the_factors(base, tmp_path):
  """A resumed run restores the factors (and the gates' scores) it trained."""
  model = patches.apply_patch(base, "lora+taps+logits", task="t", num_classes=3)
  perturb(model)
  saved = {k: v.numpy().copy() for k, v in patches.named_patch_variables(model).items()}
  checkpoint = tf.train.Checkpoint(model=model)
  path = checkpoint.write(str(tmp_path / "ckpt"))
  perturb(model, seed=9)
  checkpoint.read(path).assert_consumed()
  for key, variable in patches.named_patch_variables(model).items():
    np.testing.assert_array_equal(variable.numpy(), saved[key], err_msg=key)
