"""Finds, parses and validates the `results.json` files under a results directory.

A run's workdir holds one `results.json` (format: DESIGN.md "Workdir", plus the
keys `experiment` and `config`). This module turns each into a `RunResult` and
rejects a malformed file with an error that names the file and the bad key, so a
broken run is never silently dropped from, or mis-read into, a table. The
results directory may be a URL (`gs://...`, `ram://...`): files are found and
read through `tf.io.gfile`, and named by `str` URLs instead of `pathlib.Path`s.
"""

import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Mapping, Sequence

from k4p1 import paths
from k4p1 import workdir as workdir_lib
from k4p1.core import kinds as kinds_lib

RESULTS_FILENAME = workdir_lib.RESULTS_FILE


class ResultsFileError(ValueError):
  """A results.json that cannot be read or does not follow the format."""


@dataclasses.dataclass(frozen=True)
class TapsSummary:
  """A TAPS task's gates after training (results.json `tasks[<task>]["taps"]`).

  Attributes:
    gated_layers: convolutions with a gate.
    open_layers: those whose gate is open (their residual is kept).
    by_layer_class: layer class ("Conv2D", "DepthwiseConv2D") -> (gated, open).
  """
  gated_layers: int
  open_layers: int
  by_layer_class: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TaskResult:
  """One task's evaluation in a run. `accuracy` is a fraction in [0, 1].

  `taps` is the task's TAPS gate summary; None unless the patch has "taps".
  `validation_accuracy` (a fraction) and `validation_examples`: the task's
  validation split (runs with `validation_fraction`), else None.
  """
  accuracy: float
  num_classes: int | None = None
  examples: int | None = None
  taps: TapsSummary | None = None
  validation_accuracy: float | None = None
  validation_examples: int | None = None


@dataclasses.dataclass(frozen=True)
class RunResult:
  """One run's results.json, validated.

  Attributes:
    workdir: the run's workdir relative to the results directory (POSIX
      separators; "." when results.json sits in the results directory itself).
    experiment: "transfer", "multitask", "multires", "sequential", ...
    model: architecture name, e.g. "mobilenet_v2".
    image_size: input size in pixels, or None when not recorded.
    patch: the patch spec string as the runner wrote it.
    tasks: task name -> TaskResult, in the file's order.
    params: the `count_params` dict ("patch_trainable", "total", ...).
    command: the command line that produced the run ("" if not recorded).
    config: the resolved config dict ({} if not recorded).
    system_params: total parameters of a K-task system, or None.
    separate_models_params: parameters of K separate fine-tuned models, or None.
    path: the results.json file.
    training_alarm: the runner's record of a run that failed to train
      (runaway loss or chance-level training accuracy), or None.
  """
  workdir: str
  experiment: str
  model: str
  image_size: int | None
  patch: str
  tasks: Mapping[str, TaskResult]
  params: Mapping[str, int]
  command: str
  config: Mapping[str, Any]
  system_params: int | None
  separate_models_params: int | None
  path: pathlib.Path | str  # A str for a URL.
  training_alarm: Mapping[str, Any] | None = None

  @property
  def patch_kinds(self) -> frozenset[str]:
    """The patch's kinds, order-free: "logits+scale_bias" == "scale_bias+logits"."""
    return patch_kinds(self.patch)

  @property
  def learning_rate(self) -> float | None:
    return self.config.get("learning_rate")

  @property
  def weights(self) -> str | None:
    weights = self.config.get("weights")
    return None if weights is None else str(weights)


def patch_kinds(patch: str) -> frozenset[str]:
  """The set of kinds of a patch spec string, normalised like PatchSpec.parse.

  "scale_bias+logits" and "logits+scale_bias" give the same set; "scale+bias"
  is "scale_bias"; "full" (with or without "logits") is {"full", "logits"}.
  Unknown kinds (a results.json of another version) are kept
  (`k4p1.core.kinds.normalize`).
  """
  return kinds_lib.normalize(kinds_lib.split(patch))


def canonical_patch(kinds: frozenset[str]) -> str:
  """The spec string of a kind set, as str(PatchSpec) prints it ("logits+scale_bias")."""
  return kinds_lib.spec_string(kinds)


def find_results_files(results_dir: str | os.PathLike[str]) -> list[pathlib.Path | str]:
  """Every results.json under `results_dir`, at any depth, sorted by path.

  Raises:
    FileNotFoundError: `results_dir` is not a directory.
  """
  if paths.is_url(results_dir):
    root = os.fspath(results_dir)
    if not paths.isdir(root):
      raise FileNotFoundError(f"results_dir {root!r} is not a directory")
    return sorted(os.path.join(parent, RESULTS_FILENAME)
                  for parent, _, names in paths.walk(root)
                  if RESULTS_FILENAME in names)
  root = pathlib.Path(results_dir)
  if not root.is_dir():
    raise FileNotFoundError(f"results_dir {str(root)!r} is not a directory")
  return sorted(root.rglob(RESULTS_FILENAME))


def _fail(path: pathlib.Path, message: str) -> ResultsFileError:
  return ResultsFileError(f"{path}: {message}")


def _is_number(value: Any) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _optional_int(path, data, key) -> int | None:
  value = data.get(key)
  if value is not None and not _is_int(value):
    raise _fail(path, f"{key!r} must be an integer, got {value!r}")
  return value


def _count(path, where: str, data: dict, key: str) -> int:
  value = data.get(key)
  if not _is_int(value) or value < 0:
    raise _fail(path, f"{where}[{key!r}] must be a non-negative integer, got {value!r}")
  return value


def _parse_taps(path: pathlib.Path, where: str, taps: Any) -> TapsSummary | None:
  """A task's "taps" object as a TapsSummary (None when absent)."""
  if taps is None:
    return None
  if not isinstance(taps, dict):
    raise _fail(path, f"{where} must be an object, got {taps!r}")
  gated = _count(path, where, taps, "gated_layers")
  opened = _count(path, where, taps, "open_layers")
  if opened > gated:
    raise _fail(path, f"{where}: open_layers {opened} > gated_layers {gated}")
  classes = taps.get("by_layer_class", {})
  if not isinstance(classes, dict):
    raise _fail(path, f"{where}['by_layer_class'] must be an object, got {classes!r}")
  by_class = {}
  for name, counts in classes.items():
    inner = f"{where}['by_layer_class'][{name!r}]"
    if not isinstance(counts, dict):
      raise _fail(path, f"{inner} must be an object, got {counts!r}")
    by_class[str(name)] = (_count(path, inner, counts, "gated"),
                           _count(path, inner, counts, "open"))
  return TapsSummary(gated, opened, by_class)


def _parse_tasks(path: pathlib.Path, tasks: Any) -> dict[str, TaskResult]:
  if not isinstance(tasks, dict) or not tasks:
    raise _fail(path, f"'tasks' must be a non-empty object {{task: {{'accuracy': ...}}}}, "
                f"got {tasks!r}")
  parsed = {}
  for name, task in tasks.items():
    where = f"tasks[{name!r}]"
    if not isinstance(task, dict):
      raise _fail(path, f"{where} must be an object, got {task!r}")
    for key in ("accuracy", "validation_accuracy"):
      value = task.get(key)
      if (key == "accuracy" or value is not None) and (
          not _is_number(value) or not 0.0 <= value <= 1.0):
        raise _fail(path, f"{where}[{key!r}] must be a fraction in [0, 1], got {value!r}")
    for key in ("num_classes", "examples", "validation_examples"):
      if task.get(key) is not None and not _is_int(task[key]):
        raise _fail(path, f"{where}[{key!r}] must be an integer, got {task[key]!r}")
    validation = task.get("validation_accuracy")
    parsed[str(name)] = TaskResult(float(task["accuracy"]), task.get("num_classes"),
                                   task.get("examples"),
                                   _parse_taps(path, f"{where}['taps']", task.get("taps")),
                                   None if validation is None else float(validation),
                                   task.get("validation_examples"))
  return parsed


def _parse_params(path: pathlib.Path, params: Any) -> dict[str, int]:
  if not isinstance(params, dict):
    raise _fail(path, f"'params' must be an object, got {params!r}")
  for key in ("patch_trainable", "total"):
    if not _is_int(params.get(key)) or params[key] < 0:
      raise _fail(path, f"params[{key!r}] must be a non-negative integer, "
                  f"got {params.get(key)!r}")
  if params["total"] == 0:
    raise _fail(path, "params['total'] is 0")
  for key in ("patch_stored", "shared"):
    if key in params and (not _is_int(params[key]) or params[key] < 0):
      raise _fail(path, f"params[{key!r}] must be a non-negative integer, got {params[key]!r}")
  return dict(params)


def parse_results(data: Any, path: pathlib.Path, workdir: str) -> RunResult:
  """Validates one decoded results.json and returns it as a RunResult.

  Args:
    data: the decoded JSON.
    path: the file it came from (named in errors).
    workdir: the run's workdir relative to the results directory.

  Returns:
    The RunResult.

  Raises:
    ResultsFileError: a required key is missing or has the wrong type.
  """
  if not isinstance(data, dict):
    raise _fail(path, f"expected a JSON object, got {type(data).__name__}")
  for key in ("experiment", "model", "patch"):
    if not isinstance(data.get(key), str) or not data[key]:
      raise _fail(path, f"{key!r} must be a non-empty string, got {data.get(key)!r}")
  if not patch_kinds(data["patch"]):
    raise _fail(path, f"'patch' {data['patch']!r} names no patch kind")
  config = data.get("config", {})
  if not isinstance(config, dict):
    raise _fail(path, f"'config' must be an object, got {config!r}")
  learning_rate = config.get("learning_rate")
  if learning_rate is not None and not _is_number(learning_rate):
    raise _fail(path, f"config['learning_rate'] must be a number, got {learning_rate!r}")
  command = data.get("command", "")
  if not isinstance(command, str):
    raise _fail(path, f"'command' must be a string, got {command!r}")
  return RunResult(
      workdir=workdir,
      experiment=data["experiment"],
      model=data["model"],
      image_size=_optional_int(path, data, "image_size"),
      patch=data["patch"],
      tasks=_parse_tasks(path, data.get("tasks")),
      params=_parse_params(path, data.get("params")),
      command=command,
      config=config,
      system_params=_optional_int(path, data, "system_params"),
      separate_models_params=_optional_int(path, data, "separate_models_params"),
      path=path,
      training_alarm=_optional_mapping(path, data, "training_alarm"),
  )


def load_run(path: str | os.PathLike[str],
             results_dir: str | os.PathLike[str] | None = None) -> RunResult:
  """Reads and validates one results.json.

  Args:
    path: the results.json file.
    results_dir: the directory workdirs are named relative to (default: the
      file's own directory, i.e. workdir ".").

  Returns:
    The RunResult.

  Raises:
    ResultsFileError: the file is not valid JSON or does not follow the format.
  """
  path = os.fspath(path) if paths.is_url(path) else pathlib.Path(path)
  try:
    data = json.loads(paths.read_text(path))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise _fail(path, f"cannot read results: {e}") from e
  parent = os.path.dirname(path)
  root = results_dir if results_dir is not None else parent
  workdir = paths.relative(parent, root).replace(os.sep, "/")
  return parse_results(data, path, workdir)


def _optional_mapping(path, data: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
  value = data.get(key)
  if value is not None and not isinstance(value, Mapping):
    raise _fail(path, f"{key!r} must be an object, got {value!r}")
  return value


def collect_runs(results_dir: str | os.PathLike[str]) -> list[RunResult]:
  """Loads every results.json under `results_dir` (any depth), sorted by workdir.

  Raises:
    FileNotFoundError: `results_dir` is not a directory.
    ResultsFileError: a results.json is malformed (the message names it).
  """
  runs = [load_run(path, results_dir) for path in find_results_files(results_dir)]
  return sorted(runs, key=lambda run: run.workdir)


def collect_runs_of(results_dirs: Sequence[str | os.PathLike[str]]) -> list[RunResult]:
  """`collect_runs` of several directories read as one, sorted by workdir.

  Raises:
    FileNotFoundError: a directory is missing.
    ValueError: no directory given, or two hold a workdir of the same name
      (their tables would silently mix two runs under one name).
    ResultsFileError: a results.json is malformed (the message names it).
  """
  if not results_dirs:
    raise ValueError("no results directory given")
  owner, runs = {}, []
  for directory in results_dirs:
    for run in collect_runs(directory):
      if run.workdir in owner:
        raise ValueError(f"workdir {run.workdir!r} is under both {str(owner[run.workdir])!r} "
                         f"and {str(directory)!r}; read one of them")
      owner[run.workdir] = directory
      runs.append(run)
  return sorted(runs, key=lambda run: run.workdir)
