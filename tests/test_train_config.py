"""RunConfig validation, the recipe's hyper-rules, workdir and summaries."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from k4p1 import core
from k4p1 import train
from k4p1.train import config as config_lib
from k4p1.train import optimizers
from k4p1.train import summaries
from k4p1 import workdir as workdir_lib


def test_defaults_are_the_papers_recipe():
  config = train.resolve(train.RunConfig(workdir="w", dataset="cifar100")).config
  assert (config.optimizer, config.rmsprop_rho, config.momentum, config.epsilon) == (
      "rmsprop", 0.9, 0.9, 1.0)
  assert (config.learning_rate, config.lr_reference_batch) == (0.045, 96)
  assert (config.lr_decay_rate, config.lr_decay_epochs) == (0.98, 2.5)
  assert (config.label_smoothing, config.weight_decay) == (0.1, 4e-5)
  assert config.image_size == 224 and config.task == "cifar100"
  assert config.train_epochs == train.DEFAULT_TRAIN_EPOCHS
  assert config.patch == "logits+scale_bias"  # Canonical spelling.
  assert config.jit_compile is False


def test_an_unset_learning_rate_is_the_patchs_default_and_a_given_one_is_kept():
  def rate(**fields):
    return train.resolve(train.RunConfig(workdir="w", dataset="cifar100", **fields)).config.learning_rate
  # LoRA behind frozen BN layers ran away at the paper's rate (results/cpu_scale_lora).
  assert rate(patch="lora+logits") == 0.0142
  assert rate(patch="lora+scale_bias+logits") == rate(patch="depthwise+logits") == 0.045
  assert rate(patch="lora+logits", learning_rate=0.045) == 0.045
  with pytest.raises(ValueError, match="learning_rate must be > 0, got 0.0"):
    train.resolve(train.RunConfig(workdir="w", dataset="cifar100", learning_rate=0.0))


def test_train_re_exports_the_cores_config_and_choices():
  assert train.RunConfig is config_lib.RunConfig is core.RunConfig
  assert train.merge_overrides is core.merge_overrides
  assert train.BN_STATS == config_lib.BN_STATS == core.choices.BN_STATS
  assert train.STRATEGIES == core.choices.STRATEGIES
  assert train.OPTIMIZERS == core.choices.OPTIMIZERS


@pytest.mark.parametrize("overrides,fragment", [
    (dict(model="mobilenetv2"), "valid choices: mobilenet_v2"),
    (dict(patch="scale_bias+dw"), "valid kinds: logits"),
    (dict(dataset="cifar1000"), "valid choices"),
    (dict(strategy="gpu"), "valid choices: default, one_device, mirrored"),
    (dict(optimizer="lamb"), "valid choices: rmsprop, sgd, adam"),
    (dict(bn_stats="moving"), "valid choices: task, frozen"),
    (dict(train_steps=10, train_epochs=1.0), "not both"),
    (dict(train_steps=0), "train_steps must be an integer >= 1"),
    (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(weights="/no/such/file.h5"), "no such file"),
    (dict(alpha=0.5, model="resnet50"), "alpha=0.5 is not supported"),
    (dict(image_size=16), "image_size must be an integer >= 32"),
    (dict(workdir=""), "workdir is required"),
])
def test_validate_names_the_bad_value_and_the_choices(overrides, fragment):
  config = train.RunConfig(workdir="w", dataset="cifar100").replace(**overrides)
  with pytest.raises(ValueError, match=fragment.replace("+", r"\+")):
    train.check_config(config)


def test_unknown_config_field_is_rejected():
  with pytest.raises(ValueError, match="Unknown config field.*learning_rate"):
    train.RunConfig.from_dict({"lr": 0.1})


def test_derived_names_and_weights():
  config = train.resolve(train.RunConfig(
      workdir="w", dataset="mnist5k:5-9", weights="none", optimizer="adam")).config
  assert config.task == "mnist5k_5-9" and config.weights is None
  assert config.image_size == 64  # The offline dataset's own default.
  assert config.epsilon == 1e-7


def test_learning_rate_is_scaled_and_decays_in_stairs():
  schedule = optimizers.build_learning_rate_schedule(
      0.045, global_batch_size=192, steps_in_epoch=100)
  assert float(schedule(0)) == pytest.approx(0.09)
  assert float(schedule(249)) == pytest.approx(0.09)  # 2.5 epochs = 250 steps.
  assert float(schedule(250)) == pytest.approx(0.09 * 0.98)
  assert float(schedule(1000)) == pytest.approx(0.09 * 0.98 ** 4)
  assert optimizers.steps_per_epoch(1000, 96) == 10
  assert optimizers.total_train_steps(None, 2.5, 10) == 25
  assert optimizers.total_train_steps(7, None, 10) == 7


def test_optimizers_are_built_with_the_recipes_settings():
  rmsprop = optimizers.build_optimizer("rmsprop", 0.1, momentum=0.9, rho=0.9,
                                       epsilon=1.0)
  assert isinstance(rmsprop, keras.optimizers.RMSprop)
  assert (rmsprop.rho, rmsprop.momentum, rmsprop.epsilon) == (0.9, 0.9, 1.0)
  assert isinstance(optimizers.build_optimizer("sgd", 0.1), keras.optimizers.SGD)
  assert isinstance(optimizers.build_optimizer("adam", 0.1), keras.optimizers.Adam)
  with pytest.raises(ValueError, match="valid choices: rmsprop, sgd, adam"):
    optimizers.build_optimizer("lamb", 0.1)


def test_weight_decay_covers_kernels_only():
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
  x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
  x = keras.layers.BatchNormalization(name="bn")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(x))
  decayed = {v.path for v in model.trainable_variables if optimizers.is_kernel(v)}
  assert decayed == {"conv/kernel", "dw/kernel", "dense/kernel"}
  expected = 4e-5 * sum(float(np.sum(np.square(v.numpy())))
                        for v in model.trainable_variables if v.path in decayed)
  value = float(optimizers.weight_decay_loss(model.trainable_variables, 4e-5))
  assert value == pytest.approx(expected, rel=1e-5)


def test_write_json_atomic_replaces_whole_files(tmp_path):
  path = tmp_path / "sub" / "results.json"
  workdir_lib.write_json_atomic(str(path), {"a": 1})
  workdir_lib.write_json_atomic(str(path), {"b": 2})
  assert json.loads(path.read_text()) == {"b": 2}
  assert os.listdir(path.parent) == ["results.json"]


def test_rerun_check_refuses_another_run(tmp_path):
  config = train.resolve(train.RunConfig(workdir=str(tmp_path),
                                         dataset="cifar100")).config.to_dict()
  fields = train.IDENTITY_FIELDS
  assert not workdir_lib.check_rerun(str(tmp_path), config, fields)
  workdir_lib.write_json_atomic(workdir_lib.config_path(str(tmp_path)),
                                {"config": config})
  longer = dict(config, train_epochs=99.0)
  assert workdir_lib.check_rerun(str(tmp_path), longer, fields)  # Resumable.
  other = dict(config, patch="logits")
  with pytest.raises(train.WorkdirMismatchError,
                     match="patch: 'logits\\+scale_bias' there, 'logits' now"):
    workdir_lib.check_rerun(str(tmp_path), other, fields)


def test_rerun_check_refuses_a_foreign_directory(tmp_path):
  (tmp_path / "checkpoints").mkdir()
  config = train.resolve(train.RunConfig(workdir=str(tmp_path),
                                         dataset="cifar100")).config.to_dict()
  with pytest.raises(train.WorkdirMismatchError, match="no config.json"):
    workdir_lib.check_rerun(str(tmp_path), config, train.IDENTITY_FIELDS)


def test_scalar_summaries_read_back(tmp_path):
  writer = summaries.SummaryWriter(str(tmp_path))
  writer.scalars(3, {"train/loss": 1.5, "eval/accuracy": 0.25})
  writer.hparams({"model": "mobilenet_v2", "weights": None, "batch_size": 8})
  writer.close()
  found, plugins = {}, set()
  for name in os.listdir(tmp_path):
    for event in tf.compat.v1.train.summary_iterator(str(tmp_path / name)):
      for value in event.summary.value:
        plugins.add(value.metadata.plugin_data.plugin_name)
        if value.metadata.plugin_data.plugin_name == "scalars":
          found[value.tag] = (event.step, float(tf.make_ndarray(value.tensor)))
  assert found == {"train/loss": (3, 1.5), "eval/accuracy": (3, 0.25)}
  # HParams tab with the tensorboard package, Text tab without it.
  assert plugins & {"hparams", "text"}
