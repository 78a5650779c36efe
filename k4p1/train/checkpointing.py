"""Checkpoints of a training run, so that rerunning a command resumes it.

A checkpoint holds the step counter, the optimizer (its iteration count and
slots) and every variable of the task models, shared base included. Saving the
whole model is simple and always correct (the base is restored exactly as it
was trained, also when a later trainer unfreezes it); the patch file, not the
checkpoint, is the compact artefact. The input pipeline's position is not
saved: a resumed run starts a freshly shuffled pass over the training data.
"""

import os
from typing import Optional

from absl import logging
import tensorflow as tf

from k4p1 import paths


class RunCheckpoint:
  """A `tf.train.CheckpointManager` over a run's step, optimizer and models.

  Create it (and call `restore`) under the strategy's scope, after the models
  are built and the optimizer is built for their variables, so that every
  variable exists and is restored at once.
  """

  def __init__(self, directory: str, step: tf.Variable, max_to_keep: int = 3,
               restore_directory: Optional[str] = None, **trackables):
    """Args:
      directory: where this process saves checkpoints.
      step: int64 variable counting finished training steps.
      max_to_keep: checkpoints kept on disk.
      restore_directory: where to look for the checkpoint to resume from
        (default `directory`); non-chief workers save to a scratch directory
        but resume from the chief's.
      **trackables: what else to save, e.g. `optimizer=`, `model=`.
    """
    self.step = step
    self.directory = directory
    self.restore_directory = restore_directory or directory
    self.checkpoint = tf.train.Checkpoint(step=step, **trackables)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=max_to_keep, step_counter=step)

  @property
  def latest(self) -> Optional[str]:
    return self.manager.latest_checkpoint

  def restore(self) -> int:
    """Restores the latest checkpoint, if any.

    Returns:
      The restored step (0 when there was no checkpoint).

    Raises:
      AssertionError (from TensorFlow): the checkpoint does not fit the
        models (e.g. a different architecture); `check_rerun` normally
        catches that earlier with a clearer message.
    """
    path = tf.train.latest_checkpoint(self.restore_directory)
    if path is None:
      return 0
    self.checkpoint.restore(path).assert_existing_objects_matched()
    step = int(self.step.numpy())
    logging.info("Restored %s: resuming at step %d.", path, step)
    return step

  def save(self) -> str:
    """Saves a checkpoint numbered by the current step; returns its path."""
    path = self.manager.save(checkpoint_number=int(self.step.numpy()))
    logging.debug("Saved checkpoint %s.", path)
    return path


  def remove_scratch(self) -> None:
    """Deletes this process's checkpoints if they are a non-chief's scratch."""
    if paths.absolute(self.directory) != paths.absolute(self.restore_directory):
      paths.remove_tree(self.directory)


def scratch_directory(directory: str, worker_index: int) -> str:
  """Where a non-chief worker writes the checkpoints it must also write."""
  return os.path.join(directory, f".worker_{worker_index}")
