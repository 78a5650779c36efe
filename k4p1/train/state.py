"""What every training run builds under its strategy: optimizer, step counter, checkpoint.

Transfer, pretraining and multi-task runs share this recipe, so the paper's
optimizer settings and the resume logic live in one place.
"""

import dataclasses

from absl import logging
import keras
import tensorflow as tf

from k4p1 import workdir as workdir_lib
from k4p1.train import checkpointing
from k4p1.train import loop
from k4p1.train import optimizers
from k4p1.train import performance
from k4p1.train import precise_bn


@dataclasses.dataclass
class TrainingState:
  """The trained variables and the objects that update and save them."""
  schedule: keras.optimizers.schedules.LearningRateSchedule
  optimizer: keras.optimizers.Optimizer
  variables: list
  step: tf.Variable
  checkpoint: checkpointing.RunCheckpoint
  start_step: int


def set_bn_momentum(models, momentum: float) -> int:
  """Sets the momentum of the models' training-mode BN layers; returns how many."""
  if isinstance(models, keras.Model):
    models = [models]
  layers = precise_bn.training_mode_bn_layers(models)
  for layer in layers:
    layer.momentum = momentum
  return len(layers)


def preemption_handler(strategy, checkpoint: checkpointing.RunCheckpoint):
  """A `PreemptionCheckpointHandler` for multi-worker runs, else None.

  On SIGTERM to any worker (a preemption notice), every worker finishes the
  same step, the cluster saves a checkpoint through the run's own manager and
  each process exits with TensorFlow's restart code (42); a restarted job
  resumes from that checkpoint without losing a completed step.
  """
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return None
  return tf.distribute.experimental.PreemptionCheckpointHandler(
      strategy.cluster_resolver, checkpoint.manager)


def build_training_state(config, trained_models, *, strategy, global_batch_size: int,
                         steps_per_epoch: int, run_dir: str, chief: bool,
                         checkpoint_models: dict) -> TrainingState:
  """Builds the optimizer, step counter and checkpoint; restores the latest one.

  Call under `strategy.scope()`, after the models are built.

  Args:
    config: the run's `RunConfig`: BN momentum, LR schedule,
      optimizer, mixed precision, checkpoints kept.
    trained_models: the models whose trainable variables the run updates.
    strategy: the run's strategy (a non-chief worker saves to scratch).
    global_batch_size: examples per step, for the LR scaling.
    steps_per_epoch: for the decay interval.
    run_dir: the run's workdir.
    chief: whether this process writes the run's checkpoints.
    checkpoint_models: name -> model saved in the checkpoint.

  Returns:
    The `TrainingState`, with `start_step` the restored step (0 for a new run).
  """
  if config.bn_momentum is not None:
    count = set_bn_momentum(trained_models, config.bn_momentum)
    logging.info("BN momentum %s on %d training-mode BN layers.",
                 config.bn_momentum, count)
  schedule = optimizers.build_learning_rate_schedule(
      config.learning_rate, global_batch_size, steps_per_epoch,
      config.lr_decay_rate, config.lr_decay_epochs, config.lr_reference_batch)
  optimizer = optimizers.build_optimizer(
      config.optimizer, schedule, momentum=config.momentum,
      rho=config.rmsprop_rho, epsilon=config.epsilon)
  optimizer = performance.wrap_optimizer(optimizer, config.mixed_precision)
  variables = loop.unique_trainable_variables(trained_models)
  optimizer.build(variables)
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  checkpoint_dir = workdir_lib.checkpoint_dir(run_dir)
  save_dir = checkpoint_dir if chief else checkpointing.scratch_directory(
      checkpoint_dir, strategy.cluster_resolver.task_id)
  checkpoint = checkpointing.RunCheckpoint(
      save_dir, step, config.keep_checkpoints, restore_directory=checkpoint_dir,
      optimizer=optimizer, **checkpoint_models)
  return TrainingState(schedule, optimizer, variables, step, checkpoint,
                       checkpoint.restore())
