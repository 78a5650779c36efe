"""Tests for k4p1.report.collect: finding, parsing and validating results.json."""

import json

import pytest

from helpers import report_testing as testing
from k4p1.report import collect


def test_collect_finds_results_at_any_depth_sorted_by_workdir(tmp_path):
  testing.write_run(tmp_path / "b", patch="logits")
  testing.write_run(tmp_path / "a" / "deep" / "er", patch="full")
  (tmp_path / "no_results_here").mkdir()
  testing.write_run(tmp_path, patch="depthwise+logits")  # the results dir itself is a run
  runs = collect.collect_runs(tmp_path)
  assert [run.workdir for run in runs] == [".", "a/deep/er", "b"]
  assert [run.patch for run in runs] == ["depthwise+logits", "full", "logits"]


def test_parsed_fields(tmp_path):
  testing.write_run(
      tmp_path / "run", experiment="multitask", model="inception_v3", image_size=299,
      patch="logits+scale_bias", tasks={"t1": 0.25, "t2": 1.0}, patch_trainable=7, total=70,
      learning_rate=0.1, command="python -m x --a=1", system_params=123,
      separate_models_params=456, config={"weights": "ssd_tf2:/c"})
  (run,) = collect.collect_runs(tmp_path)
  assert run.experiment == "multitask"
  assert run.model == "inception_v3"
  assert run.image_size == 299
  assert run.patch_kinds == frozenset({"scale_bias", "logits"})
  assert {name: task.accuracy for name, task in run.tasks.items()} == {"t1": 0.25, "t2": 1.0}
  assert list(run.tasks) == ["t1", "t2"]
  assert run.params["patch_trainable"] == 7 and run.params["total"] == 70
  assert run.learning_rate == 0.1
  assert run.weights == "ssd_tf2:/c"
  assert run.command == "python -m x --a=1"
  assert (run.system_params, run.separate_models_params) == (123, 456)
  assert run.path == tmp_path / "run" / "results.json"


def test_missing_optional_keys_are_none(tmp_path):
  data = testing.results_dict(learning_rate=None)
  for key in ("image_size", "command", "config"):
    del data[key]
  testing.write_run(tmp_path / "r", data)
  (run,) = collect.collect_runs(tmp_path)
  assert run.image_size is None
  assert run.command == ""
  assert run.config == {}
  assert run.learning_rate is None and run.weights is None
  assert run.system_params is None


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("tasks"), "'tasks' must be a non-empty object"),
    (lambda d: d.update(tasks={}), "'tasks' must be a non-empty object"),
    (lambda d: d["tasks"]["cifar10"].update(accuracy=93.1), "must be a fraction in [0, 1]"),
    (lambda d: d["tasks"]["cifar10"].update(accuracy="0.9"), "must be a fraction in [0, 1]"),
    (lambda d: d["tasks"]["cifar10"].update(accuracy=float("nan")), "fraction in [0, 1]"),
    (lambda d: d["tasks"].update(cifar10=0.9), "tasks['cifar10'] must be an object"),
    (lambda d: d.pop("model"), "'model' must be a non-empty string"),
    (lambda d: d.update(experiment=3), "'experiment' must be a non-empty string"),
    (lambda d: d.update(patch="+"), "names no patch kind"),
    (lambda d: d["params"].pop("total"), "params['total'] must be a non-negative integer"),
    (lambda d: d["params"].update(total=0), "params['total'] is 0"),
    (lambda d: d["params"].update(patch_trainable=1.5), "params['patch_trainable']"),
    (lambda d: d.update(config=[1]), "'config' must be an object"),
    (lambda d: d["config"].update(learning_rate="fast"), "config['learning_rate'] must be"),
    (lambda d: d.update(system_params="many"), "'system_params' must be an integer"),
    (lambda d: d.update(image_size=True), "'image_size' must be an integer"),
    (lambda d: d["params"].update(patch_stored=-1), "params['patch_stored'] must be a non-neg"),
    (lambda d: d["tasks"]["cifar10"].update(taps=[1]), "tasks['cifar10']['taps'] must be an obj"),
    (lambda d: d["tasks"]["cifar10"].update(taps={"gated_layers": 3}),
     "tasks['cifar10']['taps']['open_layers'] must be a non-negative integer"),
    (lambda d: d["tasks"]["cifar10"].update(taps={"gated_layers": 3, "open_layers": 4}),
     "open_layers 4 > gated_layers 3"),
    (lambda d: d["tasks"]["cifar10"].update(taps={
        "gated_layers": 3, "open_layers": 1, "by_layer_class": {"Conv2D": {"gated": 3}}}),
     "tasks['cifar10']['taps']['by_layer_class']['Conv2D']['open'] must be"),
])
def test_malformed_results_name_the_file_and_key(tmp_path, mutate, message):
  testing.write_run(tmp_path / "good")
  data = testing.results_dict()
  mutate(data)
  bad = testing.write_run(tmp_path / "bad", data)
  with pytest.raises(collect.ResultsFileError) as error:
    collect.collect_runs(tmp_path)
  assert str(bad) in str(error.value)
  assert message in str(error.value)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""])
def test_unreadable_json_names_the_file(tmp_path, content):
  path = tmp_path / "w" / "results.json"
  path.parent.mkdir()
  path.write_text(content)
  with pytest.raises(collect.ResultsFileError, match=str(path)):
    collect.collect_runs(tmp_path)


@pytest.mark.parametrize("recorded, canonical", [
    ("logits", "logits"), ("scale_bias+logits", "logits+scale_bias"),
    ("logits+scale_bias", "logits+scale_bias"), ("scale+bias+logits", "logits+scale_bias"),
    ("bias+logits", "logits+bias"), ("scale+logits", "logits+scale"),
    ("scale_bias+depthwise+logits", "logits+scale_bias+depthwise"),
    ("full", "full"), ("full+logits", "full"), ("stats+logits", "logits+stats"),
    ("stats+scale_bias+logits", "logits+scale_bias"), ("taps+scale_bias+logits",
                                                       "logits+scale_bias+taps"),
    # A kind this version does not know (a newer run's) is kept, after the others.
    ("zeta+logits", "logits+zeta")])
def test_recorded_patch_strings_read_as_their_canonical_spec(recorded, canonical):
  """The report reads any results.json's `patch` with the core's rules."""
  assert collect.canonical_patch(collect.patch_kinds(recorded)) == canonical
  assert collect.patch_kinds(canonical) == collect.patch_kinds(recorded)


def test_results_file_error_is_value_error():
  assert issubclass(collect.ResultsFileError, ValueError)


def test_missing_results_dir_raises(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope"):
    collect.collect_runs(tmp_path / "nope")


def test_load_run_defaults_workdir_to_dot(tmp_path):
  path = testing.write_run(tmp_path / "x", patch="full")
  run = collect.load_run(path)
  assert run.workdir == "."
  assert run.patch == "full"
  assert json.loads(path.read_text())["patch"] == "full"


def test_taps_summary_is_parsed_per_task(tmp_path):
  data = testing.results_dict(patch="taps+scale_bias+logits", tasks={"a": 0.5, "b": 0.6})
  data["tasks"]["a"]["taps"] = {
      "gated_layers": 52, "open_layers": 12, "open_fraction": 12 / 52, "gated_params": 9,
      "by_layer_class": {"Conv2D": {"gated": 35, "open": 8},
                         "DepthwiseConv2D": {"gated": 17, "open": 4}},
      "open": ["Conv1"], "scores": {"Conv1": 0.5}}
  testing.write_run(tmp_path / "r", data)
  (run,) = collect.collect_runs(tmp_path)
  assert run.patch_kinds == frozenset({"logits", "scale_bias", "taps"})
  assert collect.canonical_patch(run.patch_kinds) == "logits+scale_bias+taps"
  assert run.tasks["a"].taps == collect.TapsSummary(
      52, 12, {"Conv2D": (35, 8), "DepthwiseConv2D": (17, 4)})
  assert run.tasks["b"].taps is None
