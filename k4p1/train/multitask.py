"""Multi-task and multi-resolution runs: K task patches on one shared base.

```python
from k4p1 import train
results = train.run_multitask(train.MultitaskConfig(
    workdir="runs/mt", tasks=("cifar10", "cifar100"), patch="scale_bias+logits"))
```
One base (`build_backbone(..., image_size=None)`: it takes any input size, so
tasks of different sizes share it), K task models from `apply_patch` (one patch
and one head per task; multires: one patch per resolution and one head shared
by all). Every other variable is the base's own object, shared by identity.

Schedule: by default a step takes one batch of every task and sums the task
losses (`loop.make_train_step` with K tasks); `task_sampling` "round_robin" or
"proportional" trains one task per step (`multitask_sampling`). With
`shared="trained"` the base is unfrozen (`patches.set_shared_trainable`): it
learns from every task and its BN layers run in training mode, updating the
shared statistics; with "frozen" only the patches (and their own BN
statistics) learn.

The workdir gets, besides the transfer runner's files: `backbone.weights.h5`
(the shared base after training, which the patches fit), `patches/<task>.k4p1`
for every task, `patches/shared_head.npz` (multires), `tasks.json` (the task
list in task-id order, which sequential runs extend) and `export/` (multitask
and sequential: one SavedModel serving every task, `serve(images, task_ids)`).
"""

import os
import shlex
import sys
import time
from typing import Optional

from absl import logging
import keras
import numpy as np

import k4p1
from k4p1 import data
from k4p1 import eval as eval_lib
from k4p1 import models
from k4p1 import patches
from k4p1.patches import io as patches_io
from k4p1.train import loop
from k4p1.train import multitask_config
from k4p1.train import multitask_sampling
from k4p1.train import optimizers
from k4p1.train import performance
from k4p1.train import state as state_lib
from k4p1.train import strategy as strategy_lib
from k4p1.train import summaries
from k4p1.train import transfer
from k4p1.train import workdir as workdir_lib

BACKBONE_FILE = transfer.BACKBONE_FILE
MANIFEST_FILE = "tasks.json"
EXPORT_DIR = "export"
SHARED_HEAD_FILE = os.path.join(workdir_lib.PATCH_DIR, "shared_head.npz")
_HPARAMS = ("model", "weights", "alpha", "patch", "bn_stats", "bn_momentum",
            "precise_bn_batches",
            "batch_size", "learning_rate", "optimizer", "shared", "task_sampling",
            "seed", "strategy")


def run_multitask(config: multitask_config.MultitaskConfig,
                  command: Optional[str] = None) -> dict:
  """Trains K task patches (multitask or multires) on one base; see module doc.

  A config with `sequential=True` is handed to `sequential.run_sequential`.

  Returns:
    The content of `<workdir>/results.json`.

  Raises:
    ValueError: a bad config value, or a workdir holding another run.
  """
  if config.sequential:
    from k4p1.train import sequential  # pylint: disable=g-import-not-at-top
    return sequential.run_sequential(config, command)
  began = time.time()
  config = config.resolved()  # Validates before anything is built.
  command = command if command is not None else shlex.join(sys.argv)
  plans = config.task_plans()
  workdir = config.workdir
  resuming = workdir_lib.check_rerun(workdir, config.to_dict(),
                                     multitask_config.IDENTITY_FIELDS)
  strategy = strategy_lib.build_strategy(config.strategy, config.tpu_address)
  logging.info("%s %s: %s, tasks %s, patch %s, shared %s, workdir %s.",
               "Resuming" if resuming else "Starting", config.experiment,
               config.model, [p.name for p in plans], config.patch,
               config.shared, workdir)
  performance.seed_everything(config.seed, config.deterministic)
  infos = [data.get_dataset_info(p.dataset) for p in plans]
  multires = config.experiment == "multires"
  spec = patches.PatchSpec.parse(config.patch)
  if multires:  # The head is shared: each resolution's patch has no logits.
    spec = patches.PatchSpec(spec.kinds - {"logits"})
  with strategy.scope():
    base = models.build_backbone(config.model, None, weights=config.weights,
                                 alpha=config.alpha)
    head = (keras.layers.Dense(infos[0].num_classes, name="logits__shared")
            if multires else None)
    task_models = [
        patches.apply_patch(
            base, spec, task=plan.model_name,
            num_classes=None if multires else info.num_classes, head=head,
            bn_stats=config.bn_stats, add_missing_scales=config.add_missing_scales)
        for plan, info in zip(plans, infos)]
    if config.shared == "trained":
      patches.set_shared_trainable(task_models, True)
  session = train_and_evaluate(config, strategy, workdir, config.experiment,
                               command, plans, infos, task_models,
                               trained=list(range(len(plans))))
  results = session["results"]
  results.update(system_params(task_models, base))
  results["params"]["patch_trainable"] = session["trainable_params"]
  if strategy_lib.is_chief(strategy):
    save_backbone(base, os.path.join(workdir, BACKBONE_FILE))
    entries = save_patches(workdir, plans, infos, task_models, config.experiment)
    if multires:
      kernel, bias = (v.numpy() for v in (head.kernel, head.bias))
      buffer = patches_io.npz_bytes({"kernel": kernel, "bias": bias})
      patches.atomic_write_bytes(os.path.join(workdir, SHARED_HEAD_FILE), buffer)
    write_manifest(workdir, config, entries, shared_head=multires)
    if not multires:
      export(workdir, task_models, config.export_image_size)
      results["export"] = EXPORT_DIR
  return finish(workdir, results, began, session["writer"], strategy)


def train_and_evaluate(config, strategy, run_dir, experiment, command, plans,
                       infos, task_models, trained) -> dict:
  """Trains `task_models[i]` for i in `trained`, then evaluates every model.

  Writes `run_dir`'s config.json, checkpoints and TensorBoard summaries.

  Returns:
    {"results": the results dict (without system params and wall time),
     "writer": the open `SummaryWriter`}.
  """
  chief = strategy_lib.is_chief(strategy)
  batch = config.batch_size
  sizes = {plan.name: transfer._num_train_examples(info)  # pylint: disable=protected-access
           for plan, info in zip(plans, infos)}
  epoch_steps = [optimizers.steps_per_epoch(sizes[plans[i].name], batch) for i in trained]
  # One epoch: every task's data once. Summed when a step trains one task.
  steps_in_epoch = (max(epoch_steps) if config.task_sampling == "all"
                    else sum(epoch_steps))
  total_steps = optimizers.total_train_steps(config.train_steps,
                                             config.train_epochs, steps_in_epoch)
  train_tasks, eval_fns = [], []
  for index, (plan, info, model) in enumerate(zip(plans, infos, task_models)):
    args = dict(global_batch_size=batch, image_size=plan.image_size,
                strategy=strategy, data_dir=config.data_dir, seed=config.seed,
                architecture=config.model)
    if index in trained:
      train_tasks.append(loop.TrainTask(
          name=plan.name, model=model, num_classes=info.num_classes,
          train_dataset=data.build_dataset(
              plan.dataset, info.train_split, training=True,
              input_options=performance.input_options(
                  config.prefetch_to_device), **args),
          global_batch_size=batch))
    eval_fns.append(eval_lib.make_accuracy_fn(
        model, data.build_dataset(plan.dataset, info.eval_split, training=False,
                                  **args), strategy))
  trained_models = [task_models[i] for i in trained]
  # A shared layer trained by every task gets statistics over every task's data.
  refresh_bn = transfer.bn_statistics_updater(
      [(task_models[i], plans[i].dataset, infos[i].train_split,
        plans[i].image_size) for i in trained], config, strategy)

  with strategy.scope():
    run_state = state_lib.build_training_state(
        config, trained_models, strategy=strategy, global_batch_size=batch,
        steps_per_epoch=steps_in_epoch, run_dir=run_dir, chief=chief,
        checkpoint_models={f"task_{i}": m for i, m in enumerate(trained_models)})
  schedule, optimizer = run_state.schedule, run_state.optimizer
  variables, step = run_state.variables, run_state.step
  checkpoint = run_state.checkpoint
  if chief:
    workdir_lib.write_json_atomic(workdir_lib.config_path(run_dir), {
        "experiment": experiment, "command": command, "config": config.to_dict(),
        "k4p1_version": k4p1.__version__})

  step_args = dict(label_smoothing=config.label_smoothing,
                   weight_decay=config.weight_decay, jit_compile=config.jit_compile)
  writer = summaries.SummaryWriter(workdir_lib.tensorboard_dir(run_dir), enabled=chief)
  write_scalars = writer.scalars
  sampled = None
  if config.task_sampling == "all":
    train_step = loop.make_train_step(strategy, train_tasks, optimizer, variables,
                                      step, **step_args)
    loop_tasks = train_tasks
  else:
    weights = [sizes[t.name] for t in train_tasks]
    # One traced model function serves the K per-task steps.
    shared_gradients = loop.make_task_gradients(
        [t.model for t in train_tasks], optimizer, config.label_smoothing)
    step_fns = [loop.make_train_step(
        strategy, [t], optimizer, loop.unique_trainable_variables([t.model]),
        step, task_gradients=shared_gradients, **step_args)
                for t in train_tasks]
    sampled = multitask_sampling.SampledSchedule(
        step_fns, train_tasks,
        lambda s: multitask_sampling.sample_task(s, config.seed, weights,
                                                 config.task_sampling), step)
    train_step, loop_tasks = sampled.train_step, [sampled.loop_task]
    write_scalars = sampled.wrap_write_scalars(writer.scalars)
  logging.info("%s: %d steps (%d per epoch), batch %d per task, %d replica(s), "
               "%d trained variables.", experiment, total_steps, steps_in_epoch,
               batch, strategy.num_replicas_in_sync, len(variables))
  writer.hparams({k: str(getattr(config, k)) for k in _HPARAMS},
                 trial_id=os.path.basename(os.path.abspath(run_dir)))

  bn_statistics = {}

  def evaluate(at_step):
    bn_statistics.clear()
    bn_statistics.update(refresh_bn())  # Before every eval and every write.
    metrics, accuracies = {}, []
    for plan, accuracy_fn in zip(plans, eval_fns):
      result = accuracy_fn()
      metrics[f"eval/{plan.name}/accuracy"] = result["accuracy"]
      metrics[f"eval/{plan.name}/examples"] = result["examples"]
      accuracies.append(result["accuracy"])
      logging.info("eval at step %d: %s accuracy %.4f on %d examples.", at_step,
                   plan.name, result["accuracy"], result["examples"])
    metrics["eval/accuracy"] = float(np.mean(accuracies))  # Mean over tasks.
    writer.scalars(at_step, {k: v for k, v in metrics.items()
                             if k.endswith("accuracy")})
    writer.flush()
    return metrics

  def save_checkpoint():
    checkpoint.save()
    writer.flush()

  result = loop.run_training_loop(
      train_step=train_step, tasks=loop_tasks, step=step, total_steps=total_steps,
      learning_rate_fn=lambda s: float(schedule(s)), save_checkpoint=save_checkpoint,
      checkpoint_every=config.checkpoint_every, evaluate=evaluate,
      eval_every=config.eval_every, write_scalars=write_scalars,
      summary_every=config.summary_every, log_every_secs=config.log_every_secs)
  final = evaluate(result.end_step)
  sizes_set = {p.image_size for p in plans}
  results = {
      "experiment": experiment,
      "model": config.model,
      "image_size": sizes_set.pop() if len(sizes_set) == 1 and experiment != "multires" else None,
      "patch": config.patch,
      "tasks": {
          plan.name: {
              "accuracy": final[f"eval/{plan.name}/accuracy"],
              "num_classes": info.num_classes,
              "examples": final[f"eval/{plan.name}/examples"],
              "dataset": plan.dataset, "image_size": plan.image_size,
              "trained_in_this_run": index in trained,
              "params": patches.count_params(model)}
          for index, (plan, info, model) in enumerate(zip(plans, infos, task_models))},
      "bn_statistics": dict(bn_statistics),
      **loop.run_record(result, optimizer=optimizer,
                        steps_per_epoch=steps_in_epoch, strategy=strategy,
                        config=config, command=command),
  }
  if sampled is not None:
    # Counted in this process only (a resumed run counts its own steps).
    results["task_steps"] = dict(zip(sampled.names, sampled.steps_per_task))
  return {"results": results, "writer": writer,
          "trainable_params": sum(int(np.prod(v.shape)) for v in variables)}


def system_params(task_models, base) -> dict:
  """The price of the K-task system next to K separate fine-tuned models.

  Returns:
    {"system_params": every distinct variable of the task models (the shared
    base once, plus every task's stored patch), "separate_models_params": K x
    (the whole base + that task's own head), "params": count_params-style
    totals of the system}.
  """
  unique, own = {}, set()
  for model in task_models:
    for variable in model.weights:
      unique[id(variable)] = variable
    own.update(id(v) for v in patches.patch_variables(model))
  size = lambda v: int(np.prod(v.shape))  # pylint: disable=unnecessary-lambda-assignment
  system = sum(size(v) for v in unique.values())
  stored = sum(size(v) for k, v in unique.items() if k in own)
  trainable = sum(size(v) for v in loop.unique_trainable_variables(task_models))
  base_total = sum(size(v) for v in base.weights)
  features = int(base.outputs[0].shape[-1])
  separate = sum(base_total + (features + 1) * patches.patch_info(m).num_classes
                 for m in task_models)
  return {"system_params": system, "separate_models_params": separate,
          "params": {"patch_trainable": trainable, "patch_stored": stored,
                     "shared": system - stored, "total": system}}


def save_backbone(base, path: str) -> None:
  """Writes the base's weights to `path` through a temp file (atomic)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".tmp-{os.getpid()}.{os.path.basename(path)}")
  try:
    base.save_weights(tmp, overwrite=True)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def save_patches(workdir, plans, infos, task_models, added_by) -> list:
  """Saves each task's patch; returns the tasks' manifest entries."""
  entries = []
  for plan, info, model in zip(plans, infos, task_models):
    path = workdir_lib.patch_path(workdir, plan.model_name)
    patches.save_patch(model, path)
    entries.append({"name": plan.name, "model_name": plan.model_name,
                    "dataset": plan.dataset,
                    "num_classes": info.num_classes, "image_size": plan.image_size,
                    "patch_file": os.path.relpath(path, workdir),
                    "added_by": added_by})
  return entries


def read_manifest(workdir: str) -> dict:
  return workdir_lib.read_json(os.path.join(workdir, MANIFEST_FILE))


def write_manifest(workdir, config, entries, shared_head=False) -> None:
  """Writes `tasks.json`: the base, its settings and the tasks in task-id order."""
  workdir_lib.write_json_atomic(os.path.join(workdir, MANIFEST_FILE), {
      "model": config.model, "alpha": config.alpha,
      "add_missing_scales": config.add_missing_scales,
      "backbone": BACKBONE_FILE,
      "shared_head": SHARED_HEAD_FILE if shared_head else None,
      "export_image_size": config.export_image_size,
      "tasks": entries})


def export(workdir, task_models, image_size) -> str:
  """Exports one SavedModel serving every task at `image_size` px to `<workdir>/export`.

  The task models take any input size and are not resized: every example is
  served at `image_size`, whatever size its task was trained at.
  """
  path = os.path.join(workdir, EXPORT_DIR)
  patches.export_multitask(task_models, path, image_size=(image_size, image_size))
  return path


def finish(run_dir, results, began, writer, strategy) -> dict:
  """Logs per-task accuracy, writes results.json (chief), closes the writer."""
  for name, task in results["tasks"].items():
    logging.info("%s: accuracy %.4f on %d examples.", name, task["accuracy"],
                 task["examples"])
  logging.info("System %s parameters vs %s for separate models.",
               f"{results['system_params']:,}", f"{results['separate_models_params']:,}")
  results["wall_s"] = time.time() - began
  if strategy_lib.is_chief(strategy):
    workdir_lib.write_json_atomic(workdir_lib.results_path(run_dir), results)
  writer.close()
  return results

