"""The `taps` patch kind: gated residuals injected by the cloning pass."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.model_checks import features_of
from k4p1 import architectures
from k4p1 import models
from k4p1 import patches
from k4p1 import train
from k4p1.patches import gates
from k4p1.patches import taps
from k4p1.train import taps as train_taps

SIZE = 32


@pytest.fixture(scope="module")
def base():
  keras.utils.set_random_seed(0)
  return models.build_backbone("mobilenet_v2", SIZE, weights=None, alpha=0.35)


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(0).uniform(-1, 1, (4, SIZE, SIZE, 3)).astype("float32")


def perturb(model, seed=1, close=()):
  """Random residuals in every gated layer; scores below tau for `close`."""
  rng = np.random.default_rng(seed)
  for name, layer in gates.gated_layers(model).items():
    layer.delta.assign(rng.normal(0, 0.05, layer.delta.shape).astype("float32"))
    layer.score.assign(0.05 if name in close else 0.2)


@pytest.mark.parametrize("arch,spec", [
    ("mobilenet_v2", "taps+scale_bias+logits"), ("mobilenet_v2", "taps+logits"),
    ("resnet50", "taps+scale_bias+logits")])
def test_injection_leaves_outputs_bit_identical(arch, spec, images):
  keras.utils.set_random_seed(0)
  net = models.build_backbone(arch, SIZE, weights=None)
  model = patches.apply_patch(net, spec, task="t", num_classes=3)
  np.testing.assert_array_equal(features_of(model)(images).numpy(),
                                net(images, training=False).numpy())
  gated = gates.gated_layers(model)
  convs = [l for l in patches.leaf_layers(net) if isinstance(l, taps.GATED_CLASSES)]
  assert len(gated) == len(convs) > 0
  for layer in gated.values():  # The base's kernel, by identity; frozen.
    assert layer.base_layer.kernel is net.get_layer(layer.base_layer.name).kernel
    assert not layer.base_layer.trainable
  own = {id(v) for v in patches.patch_variables(model)}
  assert not own & {id(v) for v in patches.shared_variables(model)}
  assert sorted({v.name for l in gated.values() for v in l.weights}) == ["delta", "score"]


def test_gate_opens_at_threshold_with_straight_through_gradient():
  score = tf.Variable(0.15)
  for value, expected in ((0.15, 1.0), (0.1, 1.0), (0.0999, 0.0), (-0.3, 0.0)):
    score.assign(value)
    with tf.GradientTape() as tape:
      gate = taps.straight_through_gate(score, 0.1)
    assert float(gate) == expected
    assert float(tape.gradient(gate, score)) == 1.0  # The identity.


def test_scores_learn_from_the_loss_and_closed_layers_equal_the_base(base, images):
  model = patches.apply_patch(base, "taps+logits", task="t", num_classes=3)
  gated = gates.gated_layers(model)
  name = next(iter(gated))
  layer = gated[name]
  perturb(model)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(model(images, training=True)))
  grad_score, grad_delta = tape.gradient(loss, [layer.score, layer.delta])
  assert float(tf.abs(grad_score)) > 0  # Straight-through: reaches the score.
  assert float(tf.reduce_max(tf.abs(grad_delta))) > 0
  # dL/ds = sum(dL/dW * delta), as for the gate's value.
  np.testing.assert_allclose(float(grad_score),
                             float(tf.reduce_sum(grad_delta * layer.delta)),
                             rtol=1e-4)
  # Closing every gate gives the base's features exactly, whatever the deltas.
  perturb(model, close=set(gated))
  np.testing.assert_array_equal(features_of(model)(images).numpy(),
                                base(images, training=False).numpy())
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(model(images, training=True)))
  assert float(tf.reduce_max(tf.abs(tape.gradient(loss, layer.delta)))) == 0.0
  summary = patches.taps_summary(model)
  assert summary["open_layers"] == 0 and summary["open_fraction"] == 0.0


def test_patch_file_keeps_open_residuals_only_and_round_trips(base, images, tmp_path):
  model = patches.apply_patch(base, "taps+scale_bias+logits", task="t", num_classes=3)
  names = sorted(gates.gated_layers(model))
  closed = set(names[::2])
  perturb(model, close=closed)
  counts = patches.count_params(model)
  summary = patches.taps_summary(model)
  assert summary["open_layers"] == len(names) - len(closed)
  path = tmp_path / "t.k4p1"
  patches.save_patch(model, path)
  spec, arrays = patches.read_patch_file(path)
  assert spec["omitted_closed_residuals"] == sorted(f"{n}/delta" for n in closed)
  assert not {f"{n}/delta" for n in closed} & set(arrays)
  assert {f"{n}/score" for n in names} <= set(arrays)
  assert sum(a.size for a in arrays.values()) == counts["patch_stored"]
  assert counts["patch_stored"] < counts["patch_trainable"] + sum(
      v.numpy().size for v in patches.patch_variables(model) if not v.trainable)
  loaded = patches.load_patch(base, path)
  np.testing.assert_array_equal(loaded(images).numpy(), model(images).numpy())
  originals = patches.named_patch_variables(model)
  for key, variable in patches.named_patch_variables(loaded).items():
    if key.endswith("/delta") and key[:-len("/delta")] in closed:
      assert not np.any(variable.numpy())  # Exactly the base.
    else:
      np.testing.assert_array_equal(variable.numpy(), originals[key].numpy())
  # Fewer open gates, a smaller file.
  perturb(model, close=set(names[1:]))
  patches.save_patch(model, tmp_path / "sparse.k4p1")
  assert (tmp_path / "sparse.k4p1").stat().st_size < path.stat().st_size / 2


def test_bake_folds_gates_into_plain_kernels(base, images):
  model = patches.apply_patch(base, "taps+scale_bias+logits", task="t", num_classes=3)
  names = sorted(gates.gated_layers(model))
  perturb(model, close=set(names[1:]))
  baked = patches.bake_taps(model)
  assert not any(isinstance(l, taps.GatedConv) for l in patches.leaf_layers(baked))
  info = patches.patch_info(baked)
  assert names[0] in info.patch_layers and names[1] not in info.patch_layers
  assert base.get_layer(names[1]) in info.shared_layers  # Closed: the base's.
  np.testing.assert_allclose(baked(images).numpy(), model(images).numpy(),
                             atol=1e-5)


def test_penalty_is_lambda_mean_abs_score_after_warmup(base):
  model = patches.apply_patch(base, "taps+logits", task="t", num_classes=3)
  gated = gates.gated_layers(model)
  for i, layer in enumerate(gated.values()):
    layer.score.assign(0.01 * i - 0.1)
  step = tf.Variable(0, dtype=tf.int64)
  fns = train_taps.penalties(["t"], [model], taps_lambda=0.5, warmup=3, step=step)
  fn = fns["t"]["taps/t"]
  assert float(fn()) == 0.0
  step.assign(3)
  expected = 0.5 * np.mean([abs(float(l.score.numpy())) for l in gated.values()])
  np.testing.assert_allclose(float(fn()), expected, rtol=1e-6)
  assert train_taps.penalties(["u"], [patches.apply_patch(
      base, "scale_bias+logits", task="u", num_classes=3)], taps_lambda=1.0,
                              warmup=0, step=step) == {}


def test_models_without_patch_info_have_no_gates(base):
  plain = keras.Model(base.inputs, keras.layers.Dense(2)(base.outputs[0]))
  assert gates.gated_layers(plain) == {}
  assert train_taps.result(plain) == {}
  assert train_taps.penalties(["p"], [plain], taps_lambda=1.0, warmup=0,
                              step=tf.Variable(0, dtype=tf.int64)) == {}


def test_default_warmup_is_two_epochs_capped_at_a_tenth_of_the_run():
  assert train_taps.warmup_steps(None, 100, 3000) == 200
  assert train_taps.warmup_steps(None, 100, 120) == 12
  assert train_taps.warmup_steps(0.5, 100, 120) == 50


@pytest.mark.parametrize("overrides,message", [
    (dict(patch="taps+depthwise+logits"), "combines 'taps' with 'depthwise'"),
    (dict(patch="taps+logits", taps_threshold=0.2), "taps_threshold must be in"),
    (dict(patch="taps+logits", taps_lambda=-1.0), "taps_lambda must be >= 0"),
    (dict(patch="taps+logits", taps_warmup_epochs=-1.0), "taps_warmup_epochs"),
    (dict(patch="taps+scale_bias+logits", tasks=("mnist5k:0-4", "mnist5k:5-9"),
          dataset=None, shared="trained"), "shared='frozen' with taps"),
])
def test_bad_taps_settings_fail_before_any_work(overrides, message, tmp_path):
  config = train.RunConfig(workdir=str(tmp_path / "w"), dataset="mnist5k",
                           weights=None).replace(**overrides)
  with pytest.raises(ValueError, match=message):
    train.resolve(config)
  assert not (tmp_path / "w").exists()


def test_every_architecture_has_taps_targets():
  for name in architectures.NAMES:
    assert architectures.get(name).matches("taps")
    assert "gated" in architectures.get(name).targets("taps")
