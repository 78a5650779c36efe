"""k4p1.core: the shared facts (patch kinds, choices, defaults, names, RunConfig)."""

import dataclasses

import pytest

from k4p1 import core
from k4p1.core import choices
from k4p1.core import defaults
from k4p1.core import kinds
from k4p1.core import names


@pytest.mark.parametrize("given, normalised", [
    ({"scale", "bias"}, {"scale_bias"}),
    ({"scale", "scale_bias", "logits"}, {"scale_bias", "logits"}),
    ({"stats", "bias"}, {"bias"}),
    ({"stats", "logits"}, {"stats", "logits"}),
    ({"full"}, {"full", "logits"}),
    ({"full", "scale_bias"}, {"full", "logits"}),
    ({"taps", "scale", "bias", "logits"}, {"taps", "scale_bias", "logits"}),
    ({"unknown", "logits"}, {"unknown", "logits"}),
])
def test_normalize_applies_the_combination_rules(given, normalised):
  assert kinds.normalize(given) == frozenset(normalised)


def test_spec_string_is_canonical_order_full_alone_unknown_kinds_last():
  assert kinds.spec_string({"scale_bias", "logits", "taps"}) == "logits+scale_bias+taps"
  assert kinds.spec_string({"full", "logits"}) == "full"
  assert kinds.spec_string({"zz", "aa", "depthwise"}) == "depthwise+aa+zz"
  assert kinds.spec_string(kinds.parse("bias + scale + logits")) == "logits+scale_bias"


@pytest.mark.parametrize("text, message", [
    ("", "Empty patch spec"),
    ("scale_bais+logits", "Did you mean 'scale_bias'"),
    ("full+depthwise", "use 'full' alone"),
    ("taps+depthwise", "use one of them"),
])
def test_parse_rejects_bad_specs_naming_the_kinds(text, message):
  with pytest.raises(ValueError, match=message) as e:
    kinds.parse(text)
  assert ", ".join(kinds.KINDS) in str(e.value)


def test_every_kind_has_a_description_and_the_bn_kinds_are_kinds():
  assert kinds.KINDS == tuple(kinds.DESCRIPTIONS)
  assert kinds.BN_KINDS < set(kinds.KINDS)
  assert all(d and "\n" not in d for d in kinds.DESCRIPTIONS.values())
  with pytest.raises(ValueError, match="valid choices: logits, stats"):
    kinds.check_kind("gamma")


# RunConfig field -> the tuple of its valid values.
_CHOICE_FIELDS = {
    "model": choices.ARCHITECTURES, "bn_stats": choices.BN_STATS,
    "bn_init": choices.BN_INIT, "shared": choices.SHARED,
    "task_sampling": choices.TASK_SAMPLING, "strategy": choices.STRATEGIES,
    "optimizer": choices.OPTIMIZERS, "mixed_precision": choices.MIXED_PRECISION,
    "input_pipeline": choices.INPUT_PIPELINES, "jit_compile": choices.JIT_COMPILE,
    "tflite_quantization": choices.TFLITE_QUANTIZATIONS,
}


@pytest.mark.parametrize("field", sorted(_CHOICE_FIELDS))
def test_each_named_setting_defaults_to_its_first_choice(field):
  config = core.RunConfig()
  valid = _CHOICE_FIELDS[field]
  assert getattr(config, field) == valid[0]
  metadata = {f.name: f.metadata for f in dataclasses.fields(core.RunConfig)}[field]
  assert metadata.get("choices", valid) == valid


def test_run_config_defaults_are_the_papers_recipe():
  config = core.RunConfig()
  # Unset, the rate is the patch's default: the paper's, but for LoRA behind frozen BN.
  assert config.learning_rate is None
  assert defaults.learning_rate(config.patch) == defaults.PAPER_LEARNING_RATE
  assert (config.lr_reference_batch, config.batch_size) == (
      defaults.REFERENCE_BATCH, defaults.REFERENCE_BATCH)
  assert (config.lr_decay_rate, config.lr_decay_epochs) == (0.98, 2.5)
  assert (config.taps_lambda, config.taps_threshold) == (1.0, 0.1)
  assert 0 <= defaults.TAPS_THRESHOLD < defaults.TAPS_SCORE_INIT
  assert core.kinds.parse(config.patch) == {"scale_bias", "logits"}
  assert config.experiment in choices.EXPERIMENTS


@pytest.mark.parametrize("patch, rate", [
    ("logits", 0.045), ("scale_bias+logits", 0.045), ("full", 0.045),
    ("lora+logits", 0.0142), ("lora+depthwise+logits", 0.0142), ("taps+lora+logits", 0.0142),
    ("lora+scale_bias+logits", 0.045), ("lora+stats+logits", 0.045)])
def test_default_learning_rate_of_each_patch(patch, rate):
  assert defaults.learning_rate(patch) == rate


def test_model_and_task_names():
  assert names.model_task_name("cifar10@96") == "cifar10_96"
  assert names.model_task_name("mnist5k:0-4") == "mnist5k_0-4"
  names.check_task_names(["cifar10@96", "mnist5k:0-4", "a.b-c_d"])
  for bad in (["a b"], ["_a"], ["@96"], [""]):
    with pytest.raises(ValueError, match="Invalid task names"):
      names.check_task_names(bad)
  with pytest.raises(ValueError, match="repeat a name"):
    names.check_task_names(["d@48", "d:48"])
  assert names.MODEL_TASK_NAME.match("mnist5k_0-4")
  assert not names.MODEL_TASK_NAME.match("mnist5k:0-4")


def test_default_task_names():
  assert names.default_task_name("mnist5k:5-9") == "mnist5k_5-9"
  assert names.default_task_name("folder:/data/my photos") == "folder_my_photos"
  assert names.default_task_name("folder:gs://b/zoo/") == "folder_zoo"
  assert names.default_task_name("tfds:eurosat/rgb:0-4") == "tfds_eurosat_rgb_0-4"
  for bad in ("a b", "d@48", "_x"):
    with pytest.raises(ValueError, match="letters, digits and '_.-'"):
      names.default_task_name(bad)


def test_row_ids_and_urls():
  assert names.row_id("a/b c-d+e=f__g") == "a_b_c-d+e=f__g"
  assert names.is_url("gs://b/x") and names.is_url("ram://k4p1/run")
  assert not names.is_url("/tmp/x") and not names.is_url("c:/x")
