"""Sequential transfer: add tasks to a finished multi-task run, everything else frozen.

```python
train.run_multitask(train.MultitaskConfig(workdir="runs/mt", sequential=True,
                                          tasks=("oxford_flowers102",)))
```
`workdir` holds a finished multitask (or sequential) run: its `tasks.json`,
`backbone.weights.h5` and `patches/`. The new tasks' patches are trained on
that base with every existing variable frozen; the run's own files
(config.json, checkpoints, TensorBoard, results.json with experiment
"sequential" and every task's accuracy) go to `<workdir>/sequential/<tasks>/`.
The new patches join `<workdir>/patches/`, `tasks.json` lists them after the
earlier tasks (their task ids do not change), and `<workdir>/export/` is
rewritten to serve every task. Architecture, width and `add_missing_scales`
come from the earlier run (the config's values are replaced).

Earlier tasks' outputs stay bit-identical: their patches and the base are only
read. The run checks it (every earlier task's variables, shared and own, have
the same bytes after training) and raises if not.
"""

import hashlib
import os
import shlex
import sys
import time
from typing import Optional

from absl import logging
import numpy as np

from k4p1 import data
from k4p1 import models
from k4p1 import patches
from k4p1.train import multitask
from k4p1.train import multitask_config
from k4p1.train import performance
from k4p1.train import strategy as strategy_lib
from k4p1.train import workdir as workdir_lib

RUNS_DIR = "sequential"


def _digest(task_models) -> str:
  """sha256 over every variable (shared and own) of the models."""
  digest = hashlib.sha256()
  for model in task_models:
    for variable in model.weights:
      value = np.ascontiguousarray(variable.numpy())
      digest.update(f"{variable.path}|{value.shape}|{value.dtype}".encode())
      digest.update(value.tobytes())
  return digest.hexdigest()


def run_sequential(config: multitask_config.MultitaskConfig,
                   command: Optional[str] = None) -> dict:
  """Trains patches for `config.tasks` on the base of the run in `config.workdir`.

  Returns:
    The content of `<workdir>/sequential/<tasks>/results.json`.

  Raises:
    ValueError: a bad config, no finished run in `workdir`, a task name that
      the run already has, or a multires run (its head is shared).
    RuntimeError: an earlier task's variables changed (a bug).
  """
  began = time.time()
  config = config.resolved()
  command = command if command is not None else shlex.join(sys.argv)
  workdir = config.workdir
  manifest_path = os.path.join(workdir, multitask.MANIFEST_FILE)
  if not os.path.exists(manifest_path):
    raise workdir_lib.WorkdirMismatchError(f"Workdir {workdir!r} holds no finished multi-task run "
                     f"({multitask.MANIFEST_FILE} is missing): run "
                     "experiments.multitask without --sequential there first.")
  manifest = multitask.read_manifest(workdir)
  if manifest.get("shared_head"):
    raise workdir_lib.WorkdirMismatchError(f"Workdir {workdir!r} holds a multires run (one head shared "
                     "by every resolution): sequential tasks need their own "
                     "run; start a multitask run instead.")
  earlier = manifest["tasks"]
  new_plans = config.task_plans()
  clash = sorted({p.model_name for p in new_plans} &
                 {multitask_config.model_task_name(e["name"]) for e in earlier})
  if clash:
    raise workdir_lib.WorkdirMismatchError(f"Workdir {workdir!r} already has tasks {clash}: pass other "
                     "task_names (--task_names).")
  config = config.replace(model=manifest["model"], alpha=manifest["alpha"],
                          add_missing_scales=manifest["add_missing_scales"],
                          weights=os.path.abspath(
                              os.path.join(workdir, manifest["backbone"])))
  run_dir = os.path.join(workdir, RUNS_DIR, "+".join(p.name for p in new_plans))
  resuming = workdir_lib.check_rerun(run_dir, config.to_dict(),
                                     multitask_config.IDENTITY_FIELDS)
  strategy = strategy_lib.build_strategy(config.strategy, config.tpu_address)
  logging.info("%s sequential run: adding %s to %s (%d earlier tasks).",
               "Resuming" if resuming else "Starting",
               [p.name for p in new_plans], workdir, len(earlier))
  performance.seed_everything(config.seed, config.deterministic)

  earlier_plans = [multitask_config.TaskPlan(e["name"], e["dataset"], e["image_size"])
                   for e in earlier]
  plans = earlier_plans + new_plans
  infos = [data.get_dataset_info(p.dataset) for p in plans]
  with strategy.scope():
    base = models.build_backbone(config.model, None, weights=config.weights,
                                 alpha=config.alpha)
    earlier_models = [patches.load_patch(base, os.path.join(workdir, e["patch_file"]))
                      for e in earlier]
    new_models = [patches.apply_patch(
        base, config.patch, task=plan.model_name, num_classes=info.num_classes,
        bn_stats=config.bn_stats, add_missing_scales=config.add_missing_scales)
                  for plan, info in zip(new_plans, infos[len(earlier):])]
  before = _digest(earlier_models)
  task_models = earlier_models + new_models
  session = multitask.train_and_evaluate(
      config, strategy, run_dir, "sequential", command, plans, infos, task_models,
      trained=list(range(len(earlier), len(plans))))
  if _digest(earlier_models) != before:
    raise RuntimeError("An earlier task's variables changed during sequential "
                       "training: its outputs would not be bit-identical.")
  results = session["results"]
  results.update(multitask.system_params(task_models, base))
  results["params"]["patch_trainable"] = session["trainable_params"]
  results["earlier_tasks_unchanged"] = True
  results["base_workdir"] = os.path.abspath(workdir)
  if strategy_lib.is_chief(strategy):
    entries = multitask.save_patches(workdir, new_plans, infos[len(earlier):],
                                     new_models, "sequential")
    multitask.write_manifest(workdir, config.replace(
        export_image_size=manifest["export_image_size"]), earlier + entries)
    multitask.export(workdir, task_models, manifest["export_image_size"])
    results["export"] = os.path.relpath(
        os.path.join(workdir, multitask.EXPORT_DIR), run_dir)
  return multitask.finish(run_dir, results, began, session["writer"], strategy)
