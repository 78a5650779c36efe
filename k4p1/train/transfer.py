"""Single-task runs: transfer a patch (`run_transfer`) or pretrain a backbone.

```python
from k4p1 import train
config = train.TransferConfig(workdir="runs/cifar100_sb", dataset="cifar100",
                              patch="scale_bias+logits", weights="imagenet")
results = train.run_transfer(config)   # also written to <workdir>/results.json
```
Rerunning with the same workdir resumes from the last checkpoint; a workdir
holding a run of another model, dataset or patch is refused.
"""

import os
import shlex
import sys
import tempfile
import time
from typing import Callable, Optional

from absl import logging
import keras

import k4p1
from k4p1 import data
from k4p1 import eval as eval_lib
from k4p1 import models
from k4p1 import patches
from k4p1.train import config as config_lib
from k4p1.train import loop
from k4p1.train import features_cache
from k4p1.train import optimizers
from k4p1.train import performance
from k4p1.train import precise_bn
from k4p1.train import state as state_lib
from k4p1.train import strategy as strategy_lib
from k4p1.train import summaries
from k4p1.train import workdir as workdir_lib

BACKBONE_FILE = "backbone.weights.h5"
# Hyper-parameters shown in TensorBoard's HParams tab.
_HPARAMS = ("model", "weights", "alpha", "image_size", "patch", "bn_stats",
            "bn_momentum", "precise_bn_batches", "dataset", "batch_size", "learning_rate", "optimizer",
            "label_smoothing", "weight_decay", "seed", "strategy")


def run_transfer(config: config_lib.TransferConfig,
                 command: Optional[str] = None) -> dict:
  """Trains one patch on one dataset; writes the workdir; returns results.json.

  Args:
    config: the run's settings (validated first, before anything is built).
    command: the command line to record (default: this process's argv).

  Returns:
    The content of `<workdir>/results.json`.

  Raises:
    ValueError: a bad config value (naming the valid choices), or a workdir
      that holds another run (`workdir.WorkdirMismatchError`).
  """

  def build_task_model(base, info, config):
    task_model = patches.apply_patch(
        base, config.patch, task=config.task, num_classes=info.num_classes,
        bn_stats=config.bn_stats, add_missing_scales=config.add_missing_scales)
    return task_model, patches.count_params(task_model)

  def save_outputs(task_model, base, config, results):
    del base  # The patch file never holds the base.
    path = workdir_lib.patch_path(config.workdir, config.task)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    patches.save_patch(task_model, path)
    results["patch_file"] = os.path.relpath(path, config.workdir)
    results["patch_file_bytes"] = os.path.getsize(path)

  # The dtype policy is global Keras state: set it for this run only.
  previous_policy = performance.set_mixed_precision(config.mixed_precision)
  try:
    return _train_single_task(config, "transfer", command, build_task_model,
                              save_outputs)
  finally:
    keras.config.set_dtype_policy(previous_policy)


def pretrain_backbone(config: config_lib.TransferConfig,
                      command: Optional[str] = None) -> dict:
  """Trains every weight of a backbone and a new head on `config.dataset`.

  Used to make an offline pretrained backbone (e.g. on `mnist5k:0-4`) that
  transfer runs then load with `weights=<workdir>/backbone.weights.h5`.
  `config.patch` is ignored (everything trains); BN layers run in training
  mode and re-estimate their statistics.

  Returns:
    The content of `<workdir>/results.json`, whose "backbone_weights" is the
    path of the saved backbone.
  """

  def build_task_model(base, info, config):
    head = keras.layers.Dense(info.num_classes, name=f"logits__{config.task}")
    model = keras.Model(base.input, head(base.output), name=config.task)
    trainable = sum(int(v.numpy().size) for v in model.trainable_variables)
    total = sum(int(v.numpy().size) for v in model.weights)
    return model, {"patch_trainable": trainable, "patch_stored": total,
                   "shared": 0, "total": total}

  def save_outputs(model, base, config, results):
    del model  # The backbone is the model's first part: save it alone.
    path = os.path.join(config.workdir, BACKBONE_FILE)
    fd, tmp = tempfile.mkstemp(suffix="." + BACKBONE_FILE, dir=config.workdir)
    os.close(fd)
    try:
      base.save_weights(tmp, overwrite=True)
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
    results["backbone_weights"] = os.path.abspath(path)

  return _train_single_task(config.replace(patch="full"), "pretrain", command,
                            build_task_model, save_outputs)


def _num_train_examples(info) -> int:
  if info.num_train_examples:
    return info.num_train_examples
  # A label subset of a dataset without per-class counts: assume balanced.
  base = data.get_dataset_info(info.base_name)
  estimate = max(1, base.num_train_examples * info.num_classes // base.num_classes)
  logging.warning("%s has no registered size; assuming %d training examples "
                  "for the epoch-based schedule.", info.name, estimate)
  return estimate


def bn_statistics_updater(tasks, config, strategy) -> Callable[[], dict]:
  """A function that sets the BN statistics a run evaluates and saves with.

  With `config.precise_bn_batches` > 0 it runs PreciseBN over the trained
  tasks' training splits (`tasks`: (model, dataset, split, image size)) and
  returns its record; otherwise (or with no training-mode BN layer) it
  changes nothing and says where the statistics come from.
  """
  precise = precise_bn.for_run(
      tasks, num_batches=config.precise_bn_batches,
      global_batch_size=config.batch_size, strategy=strategy,
      data_dir=config.data_dir, seed=config.seed, architecture=config.model)
  models = [task[0] for task in tasks]
  if precise is None:
    trained = precise_bn.training_mode_bn_layers(models)
    record = ({"method": "moving_average", "layers": len(trained),
               "momentum": config.bn_momentum} if trained
              else {"method": "none", "layers": 0})
    return lambda: dict(record)

  def refresh() -> dict:
    began = time.perf_counter()
    record = precise.update()
    record["seconds"] = round(time.perf_counter() - began, 3)
    logging.info("PreciseBN: statistics of %d BN layers from %d batches "
                 "(%.1f s).", record["layers"], record["batches"],
                 record["seconds"])
    return record

  return refresh


def _train_single_task(config: config_lib.TransferConfig, experiment: str,
                       command: Optional[str], build_task_model: Callable,
                       save_outputs: Callable) -> dict:
  """The run shared by `run_transfer` and `pretrain_backbone`."""
  began = time.time()
  config = config.resolved()  # Validates before anything is built.
  command = command if command is not None else shlex.join(sys.argv)
  info = data.get_dataset_info(config.dataset)
  workdir = config.workdir
  resuming = workdir_lib.check_rerun(workdir, config.to_dict(),
                                     config_lib.IDENTITY_FIELDS)
  strategy = strategy_lib.build_strategy(config.strategy, config.tpu_address)
  chief = strategy_lib.is_chief(strategy)
  logging.info("%s %s: %s on %s, patch %s, workdir %s.",
               "Resuming" if resuming else "Starting", experiment, config.model,
               config.dataset, config.patch, workdir)

  performance.seed_everything(config.seed, config.deterministic)
  batch = config.batch_size
  steps_in_epoch = optimizers.steps_per_epoch(_num_train_examples(info), batch)
  total_steps = optimizers.total_train_steps(config.train_steps,
                                             config.train_epochs, steps_in_epoch)
  dataset_args = dict(global_batch_size=batch, image_size=config.image_size,
                      strategy=strategy, data_dir=config.data_dir,
                      seed=config.seed, architecture=config.model)
  train_dataset = data.build_dataset(
      config.dataset, info.train_split, training=True,
      input_options=performance.input_options(config.prefetch_to_device),
      **dataset_args)
  eval_dataset = data.build_dataset(config.dataset, info.eval_split,
                                    training=False, **dataset_args)

  with strategy.scope():
    base = models.build_backbone(config.model, config.image_size,
                                 weights=config.weights, alpha=config.alpha)
    model, params = build_task_model(base, info, config)
    run_state = state_lib.build_training_state(
        config, [model], strategy=strategy, global_batch_size=batch,
        steps_per_epoch=steps_in_epoch, run_dir=workdir, chief=chief,
        checkpoint_models={"model": model})
  schedule, optimizer = run_state.schedule, run_state.optimizer
  variables, step = run_state.variables, run_state.step
  checkpoint, start_step = run_state.checkpoint, run_state.start_step
  if chief:
    # Written once data and model are known to build, so that a run that could
    # not start does not claim the workdir.
    workdir_lib.write_json_atomic(workdir_lib.config_path(workdir), {
        "experiment": experiment, "command": command, "config": config.to_dict(),
        "k4p1_version": k4p1.__version__})

  logging.info("%s: %d steps (%d per epoch of %s), global batch %d, %d "
               "replica(s); parameters %s.", experiment, total_steps,
               steps_in_epoch, config.dataset, batch,
               strategy.num_replicas_in_sync, params)
  step_model = model
  if config.cache_features:
    # Only the head trains: compute the backbone's features once per image
    # (no augmentation) and train the head (same layer objects) on them.
    feature_model, step_model = features_cache.split_logits_model(model)
    cache_source = data.build_dataset(
        config.dataset, info.train_split, training=False,
        **dict(dataset_args, strategy=None))
    features, labels = features_cache.extract_features(feature_model,
                                                       cache_source)
    train_dataset = features_cache.cached_dataset(features, labels, batch,
                                                  config.seed, strategy)
    logging.info("Cached %d feature vectors of %s.", len(labels), config.dataset)
  task = loop.TrainTask(name=config.task, model=step_model,
                        num_classes=info.num_classes,
                        train_dataset=train_dataset, global_batch_size=batch)
  train_step = loop.make_train_step(
      strategy, [task], optimizer, variables, step,
      label_smoothing=config.label_smoothing, weight_decay=config.weight_decay,
      jit_compile=config.jit_compile)
  accuracy_fn = eval_lib.make_accuracy_fn(model, eval_dataset, strategy)
  refresh_bn = bn_statistics_updater(
      [(model, config.dataset, info.train_split, config.image_size)], config,
      strategy)
  writer = summaries.SummaryWriter(workdir_lib.tensorboard_dir(workdir),
                                   enabled=chief)
  writer.hparams({k: getattr(config, k) for k in _HPARAMS},
                 trial_id=os.path.basename(os.path.abspath(workdir)))
  writer.scalars(start_step, {"params/patch_trainable": params["patch_trainable"],
                              "params/patch_stored": params["patch_stored"]})

  def evaluate(at_step):
    refresh_bn()
    metrics = accuracy_fn()
    logging.info("eval at step %d: accuracy %.4f on %d examples of %s.",
                 at_step, metrics["accuracy"], metrics["examples"],
                 config.dataset)
    writer.scalars(at_step, {"eval/accuracy": metrics["accuracy"]})
    writer.flush()
    return {"eval/accuracy": metrics["accuracy"],
            "examples": metrics["examples"]}

  def save_checkpoint():
    checkpoint.save()
    writer.flush()

  result = loop.run_training_loop(
      train_step=train_step, tasks=[task], step=step, total_steps=total_steps,
      learning_rate_fn=lambda s: float(schedule(s)),
      save_checkpoint=save_checkpoint,
      checkpoint_every=config.checkpoint_every, evaluate=evaluate,
      eval_every=config.eval_every, write_scalars=writer.scalars,
      summary_every=config.summary_every, log_every_secs=config.log_every_secs)
  bn_statistics = refresh_bn()  # Before the final eval and the patch file.
  final = accuracy_fn()
  writer.scalars(result.end_step, {"eval/accuracy": final["accuracy"]})
  logging.info("Final eval at step %d: accuracy %.4f on %d examples.",
               result.end_step, final["accuracy"], final["examples"])

  results = {
      "experiment": experiment,
      "model": config.model,
      "image_size": config.image_size,
      "patch": str(patches.PatchSpec.parse(config.patch)),
      "tasks": {config.task: {"accuracy": final["accuracy"],
                              "num_classes": info.num_classes,
                              "examples": final["examples"],
                              "dataset": config.dataset}},
      "params": params,
      "bn_statistics": bn_statistics,
      **loop.run_record(result, optimizer=optimizer,
                        steps_per_epoch=steps_in_epoch, strategy=strategy,
                        config=config, command=command),
  }
  if chief:
    save_outputs(model, base, config, results)
  results["wall_s"] = time.time() - began
  if chief:
    workdir_lib.write_json_atomic(workdir_lib.results_path(workdir), results)
  writer.close()
  return results
