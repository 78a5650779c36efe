"""Writes synthetic run workdirs (results.json only) for tests of the report."""

import json
import os
import pathlib
from typing import Any, Mapping

from k4p1.report import collect


def results_dict(*, experiment: str = "transfer", model: str = "mobilenet_v2",
                 image_size: int = 224, patch: str = "logits+scale_bias",
                 tasks: Mapping[str, float] | None = None, patch_trainable: int = 100,
                 total: int = 10_000, learning_rate: float | None = 0.045,
                 command: str = "python -m experiments.train", **extra: Any) -> dict[str, Any]:
  """A results.json dict in the runner's format (CONTRACT.md).

  Args:
    experiment, model, image_size, patch: the top-level keys.
    tasks: task name -> accuracy fraction (default {"cifar10": 0.5}).
    patch_trainable, total: the params counts used by the report.
    learning_rate: config["learning_rate"] (omitted when None).
    command: the recorded command line.
    **extra: other top-level keys; `config` here is merged into the default
      config ({"learning_rate": ..., "weights": "imagenet", "bn_stats": "task"}).

  Returns:
    The dict.
  """
  config = {"weights": "imagenet", "bn_stats": "task"}
  if learning_rate is not None:
    config["learning_rate"] = learning_rate
  config.update(extra.pop("config", {}))
  tasks = {"cifar10": 0.5} if tasks is None else tasks
  data = {
      "experiment": experiment, "model": model, "image_size": image_size, "patch": patch,
      "tasks": {name: {"accuracy": acc, "num_classes": 10, "examples": 100}
                for name, acc in tasks.items()},
      "params": {"patch_trainable": patch_trainable, "patch_stored": patch_trainable,
                 "shared": total - patch_trainable, "total": total},
      "steps": 10, "images_per_sec": 1.0, "wall_s": 1.0, "k4p1_version": "0.1.0",
      "command": command, "config": config,
  }
  data.update(extra)
  return data


def write_run(workdir: str | os.PathLike[str], data: Mapping[str, Any] | None = None,
              **kwargs: Any) -> pathlib.Path:
  """Creates `workdir` and writes `data` (or `results_dict(**kwargs)`) as its results.json."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / collect.RESULTS_FILENAME
  path.write_text(json.dumps(data if data is not None else results_dict(**kwargs)))
  return path
