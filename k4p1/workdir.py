"""A run's directory: every file's place, atomic writes, and rerun safety.

```
<workdir>/config.json          the resolved config and the command line
<workdir>/results.json         final metrics, parameter counts, timings
<workdir>/checkpoints/         tf.train.CheckpointManager
<workdir>/tensorboard/         summaries
<workdir>/patches/<task>.safetensors  one patch per task (`.k4p1`: older runs)
<workdir>/patches/shared_head.npz   multires: the head every size shares
<workdir>/backbone.weights.h5  multi-task and pretrain runs: the base
<workdir>/tasks.json           multi-task runs: the tasks in task-id order
<workdir>/export/              multi-task runs: one SavedModel for every task
<workdir>/tflite/              --export_tflite: <task>.tflite (transfer) or
                               tasks.tflite (multi-task: one file, every task)
<workdir>/sequential/<tasks>/  a sequential run's own config, results, ...
<workdir>/run.lock             while a run holds the workdir (workdir_lock.py)
```
A workdir may be local or a URL (`gs://...`, `ram://...`: `k4p1.paths`).
Every file is written through `k4p1.atomic` (temp file, then rename; a single
object write on object stores) and read through `tf.io.gfile`.
"""

import json
import os
from typing import Any, Mapping, Optional, Sequence

from k4p1 import atomic
from k4p1 import paths

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
PATCH_DIR = "patches"
PATCH_EXTENSION = ".safetensors"
BACKBONE_FILE = "backbone.weights.h5"
MANIFEST_FILE = "tasks.json"
EXPORT_DIR = "export"
TFLITE_DIR = "tflite"
TFLITE_EXTENSION = ".tflite"
MULTITASK_TFLITE = "tasks"  # tflite/tasks.tflite serves every task.
SHARED_HEAD_FILE = os.path.join(PATCH_DIR, "shared_head.npz")
SEQUENTIAL_DIR = "sequential"
LOCK_FILE = "run.lock"


class WorkdirMismatchError(ValueError):
  """A workdir holds another run: reusing it would mix two runs' files."""


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG_FILE)


def results_path(workdir: str) -> str:
  return os.path.join(workdir, RESULTS_FILE)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, CHECKPOINT_DIR)


def tensorboard_dir(workdir: str) -> str:
  return os.path.join(workdir, TENSORBOARD_DIR)


def patch_path(workdir: str, task: str) -> str:
  return os.path.join(workdir, PATCH_DIR, task + PATCH_EXTENSION)


def backbone_path(workdir: str) -> str:
  return os.path.join(workdir, BACKBONE_FILE)


def manifest_path(workdir: str) -> str:
  return os.path.join(workdir, MANIFEST_FILE)


def export_dir(workdir: str) -> str:
  return os.path.join(workdir, EXPORT_DIR)


def tflite_path(workdir: str, name: str) -> str:
  """`tflite/<name>.tflite`: a task's name, or `MULTITASK_TFLITE`."""
  return os.path.join(workdir, TFLITE_DIR, name + TFLITE_EXTENSION)


def lock_path(workdir: str) -> str:
  return os.path.join(workdir, LOCK_FILE)


def shared_head_path(workdir: str) -> str:
  return os.path.join(workdir, SHARED_HEAD_FILE)


def sequential_run_dir(workdir: str, task_names: Sequence[str]) -> str:
  """Where a sequential run adding `task_names` keeps its own files."""
  return os.path.join(workdir, SEQUENTIAL_DIR, "+".join(task_names))


def save_weights(model, path: str) -> None:
  """`model.save_weights(path)` through a local temp file (a model or layer).

  Keras writes the temp file; `atomic.output_path` renames it into place, or
  copies it to a URL `path`.
  """
  with atomic.output_path(path) as tmp:
    model.save_weights(tmp, overwrite=True)


def write_manifest(workdir: str, payload: Mapping[str, Any]) -> None:
  write_json_atomic(manifest_path(workdir), dict(payload))


def read_manifest_for_sequential(workdir: str) -> dict:
  """The tasks.json of the finished multi-task run a sequential run extends.

  Raises:
    WorkdirMismatchError: no finished multi-task run there, or a multires
      run (its head is shared by every resolution).
  """
  path = manifest_path(workdir)
  if not paths.exists(path):
    raise WorkdirMismatchError(
        f"Workdir {workdir!r} holds no finished multi-task run "
        f"({MANIFEST_FILE} is missing): run experiments.run with --tasks "
        "and without --sequential there first.")
  manifest = read_json(path)
  if manifest.get("shared_head"):
    raise WorkdirMismatchError(
        f"Workdir {workdir!r} holds a multires run (one head shared by every "
        "resolution): sequential tasks need their own run; start a multitask "
        "run instead.")
  return manifest


def write_json_atomic(path: str, payload: Any) -> None:
  """Writes `payload` as JSON to a temp file beside `path`, then renames it.

  A reader (or a run killed mid-write) sees the old file or the new one, never
  half of one.
  """
  text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
  atomic.write_bytes_atomic(path, text.encode("utf-8"))


def read_json(path: str) -> Any:
  """The JSON file `path` (local or a URL), parsed."""
  return json.loads(paths.read_text(path))


def check_rerun(workdir: str, config: Mapping[str, Any],
                identity_fields: Sequence[str],
                defaults: Optional[Mapping[str, Any]] = None) -> bool:
  """Checks that `workdir` is empty or holds a run of the same model and task.

  Args:
    workdir: the run's directory.
    config: the new run's resolved config (a dict).
    identity_fields: fields on which the old and the new run must agree (a
      different patch or dataset is a different run); the others, e.g. the
      number of steps, may change and the run resumes from its checkpoint.
    defaults: what a field missing from the previous run's config.json (one
      written before the field existed) ran with.

  Returns:
    True if `workdir` holds a previous run (it will be resumed).

  Raises:
    WorkdirMismatchError: the previous run differs in an identity field, or
      the directory holds files that are not a k4p1 run's.
  """
  path = config_path(workdir)
  if not paths.exists(path):
    leftovers = [name for name in (CHECKPOINT_DIR, RESULTS_FILE, PATCH_DIR)
                 if paths.exists(os.path.join(workdir, name))]
    if leftovers:
      raise WorkdirMismatchError(
          f"Workdir {workdir!r} has {leftovers} but no {CONFIG_FILE}: it is not "
          "a run this version can resume. Use a new --workdir.")
    return False
  recorded = read_json(path).get("config", {})
  previous = {name: recorded.get(name, (defaults or {}).get(name))
              for name in identity_fields}
  diffs = {name: (previous[name], config.get(name))
           for name in identity_fields if previous[name] != config.get(name)}
  if diffs:
    described = "; ".join(f"{name}: {old!r} there, {new!r} now"
                          for name, (old, new) in sorted(diffs.items()))
    raise WorkdirMismatchError(
        f"Workdir {workdir!r} holds a different run ({described}). Use a new "
        "--workdir, or delete this one to start over.")
  return True
