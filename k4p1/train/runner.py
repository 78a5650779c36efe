"""`run`: the one function that runs every kind of run.

```python
from k4p1 import train
results = train.run(train.RunConfig(workdir="runs/cifar100_sb",
                                    dataset="cifar100", weights="imagenet"))
results = train.run(train.RunConfig(workdir="runs/mt",
                                    tasks=("cifar10", "cifar100")))
```
The run, in order: resolve the config once (`plan.resolve`: every check, the
patch spec and the datasets); take the workdir's lock (the chief;
`workdir_lock`: a live run there stops this one); refuse a workdir that holds
another run; build
the strategy, the models (`build`), the training state (optimizer, step and
per-task step counters, checkpoint; restored when resuming); write
config.json; train with one loop whose step driver trains every task or one
sampled task per step (`steps`); evaluate (`evaluation`); write results.json
and the run's artefacts (`outputs`). Transfer is K = 1; multi-task,
multi-resolution, sequential and pretraining runs differ only in their plan.
Rerunning with the same workdir resumes from the last checkpoint.
"""

import shlex
import sys
import time
from typing import Optional, Union

from absl import logging
import keras
import tensorflow as tf

import k4p1
from k4p1 import data
from k4p1 import patches
from k4p1 import paths
from k4p1 import workdir as workdir_lib
from k4p1 import workdir_lock
from k4p1.train import bn_init
from k4p1.train import build
from k4p1.train import config as config_lib
from k4p1.train import evaluation
from k4p1.train import features_cache
from k4p1.train import inputs
from k4p1.train import loop
from k4p1.train import optimizers
from k4p1.train import outputs
from k4p1.train import param_counts
from k4p1.train import performance
from k4p1.train import plan as plan_lib
from k4p1.train import progress
from k4p1.train import record
from k4p1.train import state as state_lib
from k4p1.train import steps as steps_lib
from k4p1.train import strategy as strategy_lib
from k4p1.train import summaries
from k4p1.train import taps

# Hyper-parameters shown in TensorBoard's HParams tab.
_HPARAMS = ("model", "weights", "alpha", "patch", "bn_stats", "bn_init",
            "bn_momentum",
            "precise_bn_batches", "batch_size", "learning_rate", "optimizer",
            "label_smoothing", "weight_decay", "shared", "task_sampling", "seed",
            "strategy")


# Every batch of the run is pulled inside: a file of a folder dataset that
# fails to decode ends it with `data.BadImageError`, not TensorFlow's error.
@data.naming_bad_images()
def run(config: Union[config_lib.RunConfig, plan_lib.RunPlan],
        command: Optional[str] = None,
        strategy: Optional[tf.distribute.Strategy] = None) -> dict:
  """Runs `config` (see the module docstring); returns results.json's content.

  Args:
    config: the run's settings, or a plan already resolved from them.
    command: the command line to record (default: this process's argv).
    strategy: the strategy `config.strategy` names, when the caller built it
      (a multi-worker strategy must exist before any other TensorFlow work);
      None: built here, first.

  Raises:
    ValueError: a bad config value (naming the valid choices), or a workdir
      that holds another run (`workdir.WorkdirMismatchError`), or that a live
      run is using (`workdir_lock.WorkdirLockedError`, naming it).
    data.BadImageError: an image file of a folder dataset failed to decode
      (the checkpoints written before it are intact: remove the file and
      rerun to resume, or set `skip_bad_images`).
    RuntimeError: a sequential run changed an earlier task (a bug).
  """
  began = time.time()
  settings = config.config if isinstance(config, plan_lib.RunPlan) else config
  if strategy is None:
    strategy = strategy_lib.build_strategy(settings.strategy,
                                           settings.tpu_address)
  plan = config if isinstance(config, plan_lib.RunPlan) else plan_lib.resolve(config)
  command = command if command is not None else shlex.join(sys.argv)
  # One process per workdir: a sequential run writes into the base workdir.
  with workdir_lock.hold(plan.config.workdir, command,
                         enabled=strategy_lib.is_chief(strategy)):
    # The dtype policy is global Keras state: set it for this run only.
    previous_policy = performance.set_mixed_precision(
        plan.config.mixed_precision)
    try:
      return _Run(plan, command, strategy).execute(began)
    finally:
      keras.config.set_dtype_policy(previous_policy)


def pretrain_backbone(config: config_lib.RunConfig,
                      command: Optional[str] = None) -> dict:
  """`run` with `pretrain=True`: trains a backbone (and a head) on `dataset`.

  Used to make an offline pretrained backbone (e.g. on `mnist5k:0-4`) that
  transfer runs then load with `weights=<workdir>/backbone.weights.h5`
  (results.json's "backbone_weights").
  """
  return run(config.replace(pretrain=True, patch="full"), command)


class _Run:
  """One run's objects, built in `__init__`'s order; `execute` trains."""

  def __init__(self, plan: plan_lib.RunPlan, command: str, strategy):
    self.plan, self.command, config = plan, command, plan.config
    resuming = workdir_lib.check_rerun(plan.run_dir, config.to_dict(),
                                       config_lib.IDENTITY_FIELDS,
                                       config_lib.RunConfig().to_dict())
    self.strategy = strategy
    self.chief = strategy_lib.is_chief(self.strategy)
    logging.info("%s %s: %s, tasks %s, patch %s, workdir %s.",
                 "Resuming" if resuming else "Starting", plan.experiment,
                 config.model, [t.name for t in plan.tasks], config.patch,
                 plan.run_dir)
    runtime = performance.runtime()
    logging.info("TensorFlow %s, CPU kernels: oneDNN %s (%s).",
                 runtime["tensorflow"],
                 {True: "on", False: "off", None: "unknown"}[runtime["onednn"]],
                 "TF_ENABLE_ONEDNN_OPTS=" + runtime["TF_ENABLE_ONEDNN_OPTS"]
                 if runtime["TF_ENABLE_ONEDNN_OPTS"] is not None
                 else "TensorFlow's default for this CPU")
    performance.seed_everything(config.seed, config.deterministic)
    trained = plan.trained_tasks
    epoch_steps = [optimizers.steps_per_epoch(plan_lib.train_examples(t.dataset),
                                              config.batch_size) for t in trained]
    # One epoch: every task's data once (summed when a step trains one task).
    self.steps_per_epoch = (max(epoch_steps) if config.task_sampling == "all"
                            else sum(epoch_steps))
    self.total_steps = optimizers.total_train_steps(
        config.train_steps, config.train_epochs, self.steps_per_epoch)
    with self.strategy.scope():
      self.models = build.build_models(plan)
      self.trained_models = [m for t, m in zip(plan.tasks, self.models.task_models)
                             if t.trained]
      self.task_steps = steps_lib.task_step_counter(len(trained))
      checkpointed = {f"task_{i}": m for i, m in enumerate(self.trained_models)}
      self.state = state_lib.build_training_state(
          config, self.trained_models, strategy=self.strategy,
          global_batch_size=config.batch_size,
          steps_per_epoch=self.steps_per_epoch, run_dir=plan.run_dir,
          chief=self.chief, checkpoint_models=dict(checkpointed,
                                                   task_steps=self.task_steps))
    self.bn_init = self._initialize_bn()
    if self.chief:
      # Written once data and models are known to build, so that a run that
      # could not start does not claim the workdir.
      workdir_lib.write_json_atomic(workdir_lib.config_path(plan.run_dir), {
          "experiment": plan.experiment, "command": command,
          "config": config.to_dict(), "k4p1_version": k4p1.__version__})
    self.writer = summaries.SummaryWriter(
        workdir_lib.tensorboard_dir(plan.run_dir), enabled=self.chief)
    self.evaluator = evaluation.Evaluator(plan, self.models.task_models,
                                          self.strategy, self.writer.scalars)

  def _initialize_bn(self) -> dict:
    """`bn_init` before the first step; a resumed run restored its values."""
    plan = self.plan
    if self.state.start_step:
      record = {"method": plan.bn_init, "restored_from_checkpoint": True}
      for model in self.trained_models:
        patches.set_bn_init(model, record)
      return record
    return bn_init.for_run(
        self.trained_models, method=plan.bn_init, strategy=self.strategy,
        num_batches=plan.config.precise_bn_batches,
        samples=lambda n: inputs.samples(plan.tasks, self.models.task_models,
                                         n, self.strategy))

  def _train_tasks(self) -> list:
    """The trained tasks as `loop.TrainTask`s, with their training data."""
    config, tasks = self.plan.config, []
    for task, model in zip(self.plan.trained_tasks, self.trained_models):
      if config.cache_features:
        # Only the head trains: compute the backbone's features once per image
        # (no augmentation) and train the head (same layer objects) on them.
        feature_model, model = features_cache.split_logits_model(model)
        features, labels = features_cache.extract_features(
            feature_model, task.input.features_source())
        dataset = features_cache.cached_dataset(
            features, labels, config.batch_size, config.seed, self.strategy)
        logging.info("Cached %d feature vectors of %s.", len(labels), task.name)
      else:
        dataset = task.input.training(self.strategy)
      tasks.append(loop.TrainTask(task.name, model, task.num_classes, dataset,
                                  config.batch_size))
    return tasks

  def _step_driver(self):
    """The step the loop calls: every task, or one sampled task per step."""
    config, state = self.plan.config, self.state
    tasks = self._train_tasks()
    step_args = dict(label_smoothing=config.label_smoothing,
                     weight_decay=config.weight_decay,
                     jit_compile=config.jit_compile)
    penalties = taps.penalties(
        [t.name for t in tasks], [t.model for t in tasks],
        taps_lambda=config.taps_lambda, step=state.step,
        warmup=taps.warmup_steps(config.taps_warmup_epochs,
                                 self.steps_per_epoch, self.total_steps))
    if config.task_sampling == "all":
      train_step = loop.make_train_step(
          self.strategy, tasks, state.optimizer, state.variables, state.step,
          penalties={k: f for p in penalties.values() for k, f in p.items()},
          **step_args)
      return steps_lib.AllTasksStep(train_step, [t.train_dataset for t in tasks],
                                    self.task_steps)
    # One traced model function serves the K per-task steps.
    shared_gradients = loop.make_task_gradients(
        [t.model for t in tasks], state.optimizer, config.label_smoothing)
    step_fns = [loop.make_train_step(
        self.strategy, [t], state.optimizer,
        loop.unique_trainable_variables([t.model]), state.step,
        task_gradients=shared_gradients, penalties=penalties.get(t.name),
        **step_args) for t in tasks]
    weights = [plan_lib.train_examples(t.dataset) for t in self.plan.trained_tasks]
    choose = lambda s: steps_lib.sample_task(s, config.seed, weights,  # pylint: disable=g-long-lambda
                                             config.task_sampling)
    return steps_lib.SampledTaskStep(step_fns, [t.train_dataset for t in tasks],
                                     choose, state.step, self.task_steps)

  def _write_hparams(self) -> None:
    config = self.plan.config
    self.writer.hparams({k: getattr(config, k) for k in _HPARAMS},
                        trial_id=paths.basename(self.plan.run_dir))

  def _write_scalars(self, step: int, values: dict) -> None:
    """Training summaries, with TAPS's gates (open fraction, every score)."""
    names = [t.name for t in self.plan.trained_tasks]
    self.writer.scalars(step, dict(values, **taps.scalars(names,
                                                         self.trained_models)))

  def execute(self, began: float) -> dict:
    """Trains to the requested step, evaluates, writes everything."""
    plan, config, state = self.plan, self.plan.config, self.state
    earlier = [m for t, m in zip(plan.tasks, self.models.task_models)
               if not t.trained]
    before = outputs.digest(earlier) if earlier else None
    driver = self._step_driver()
    self._write_hparams()
    logging.info("%s: %d steps (%d per epoch), batch %d per task, %d "
                 "replica(s), %d trained variables.", plan.experiment,
                 self.total_steps, self.steps_per_epoch, config.batch_size,
                 self.strategy.num_replicas_in_sync, len(state.variables))

    def save_checkpoint():
      state.checkpoint.save()
      self.writer.flush()

    preemption = state_lib.preemption_handler(self.strategy, state.checkpoint)
    after_step = None
    if preemption is not None:  # Checkpoints are numbered by the step.
      after_step = lambda: preemption.save_checkpoint_if_preempted(  # pylint: disable=g-long-lambda
          checkpoint_number=int(state.step.numpy()))
    result = loop.run_training_loop(
        after_step=after_step,
        train_step=driver, task_names=[t.name for t in plan.trained_tasks],
        step=state.step, total_steps=self.total_steps,
        learning_rate_fn=lambda s: float(state.schedule(s)),
        save_checkpoint=save_checkpoint, checkpoint_every=config.checkpoint_every,
        evaluate=self.evaluator, eval_every=config.eval_every,
        write_scalars=self._write_scalars, summary_every=config.summary_every,
        log_every_secs=config.log_every_secs)
    self.evaluator(result.end_step)  # Sets the BN statistics that are saved.
    if earlier and outputs.digest(earlier) != before:
      raise RuntimeError("An earlier task's variables changed during sequential "
                         "training: its outputs would not be bit-identical.")
    # Each worker of a cluster logs it: equal digests, equal weights everywhere.
    log = logging.info if config.strategy == "multi_worker" else logging.debug
    for task, model in zip(plan.tasks, self.models.task_models):
      log("Weights digest of %s: %s", task.name, outputs.digest([model]))
      gates = taps.result(model)
      if gates and task.trained:
        logging.info("TAPS %s: %d of %d layers open (%.0f%%), %d residual "
                     "parameters kept.", task.name, gates["open_layers"],
                     gates["gated_layers"], 100 * gates["open_fraction"],
                     gates["open_delta_params"])
    alarm = progress.training_alarm(
        result.first_loss, result.train_metrics,
        max(1 / t.num_classes for t in self.plan.trained_tasks))
    if alarm:
      logging.warning(
          "Training failed (%s): cross-entropy %.3g in the first summary window, "
          "%.3g and training accuracy %.3f in the last. The accuracies below are "
          "not those of a trained patch: lower --learning_rate (now %g%s).",
          alarm["reason"], alarm["first_loss"] or float("nan"), alarm["last_loss"],
          alarm["last_accuracy"], self.plan.config.learning_rate,
          "; LoRA behind frozen BN layers failed at 0.045 in results/cpu_scale_lora"
          if self.plan.spec.has_lora else "")
    return self._finish(result, began, alarm)

  def _finish(self, result: loop.LoopResult, began: float, alarm) -> dict:
    plan = self.plan
    # Counted once, after training: TAPS stores only the layers whose gates
    # ended open.
    params = param_counts.counts(
        plan.policy.param_counts, self.models.task_models, self.models.base,
        self.state.variables)
    self.writer.scalars(result.end_step, {
        f"params/{key}": params["params"][key]
        for key in ("patch_trainable", "patch_stored")})
    training = record.Training(
        start_step=result.start_step, end_step=result.end_step,
        optimizer_steps=int(self.state.optimizer.iterations.numpy()),
        steps_per_epoch=self.steps_per_epoch,
        images_per_sec=result.images_per_sec,
        train_metrics=result.train_metrics, eval_history=result.eval_history,
        alarm=alarm,
        replicas=self.strategy.num_replicas_in_sync,
        task_steps={t.name: int(n) for t, n in zip(
            plan.trained_tasks, self.task_steps.numpy().tolist())})
    artefacts = (outputs.write_artefacts(plan, self.models) if self.chief
                 else {})
    results = record.results(
        plan, tasks=record.task_entries(plan, self.models.task_models,
                                        self.evaluator.per_task),
        bn_init=self.bn_init, bn_statistics=self.evaluator.bn_statistics,
        training=training, params=params, artefacts=artefacts,
        command=self.command, wall_s=time.time() - began)
    if self.chief:
      workdir_lib.write_json_atomic(workdir_lib.results_path(plan.run_dir),
                                    results)
      logging.info("%s done in %.0f s: %s.", plan.experiment, results["wall_s"],
                   workdir_lib.results_path(plan.run_dir))
    else:
      self.state.checkpoint.remove_scratch()
    self.writer.close()
    return results
