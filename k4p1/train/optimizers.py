"""Optimizer, learning-rate schedule and weight decay of the paper's recipe.

Hyper-rules are small pure functions of the dataset size and batch size, so a
run's schedule can be read (and tested) without building anything.
"""

import math
import re

import keras
import tensorflow as tf

from k4p1.core import choices
from k4p1.core import defaults

OPTIMIZERS = choices.OPTIMIZERS
# Keras 3 names a layer's kernel "kernel" (Dense, Conv2D, DepthwiseConv2D) and
# some layers "depthwise_kernel" / "pointwise_kernel"; never BN's or biases.
_KERNEL_NAME = re.compile(r"(^|_)kernel(:\d+)?$")


def steps_per_epoch(num_train_examples: int, global_batch_size: int) -> int:
  """Optimizer steps in one epoch (at least 1; the last partial batch is dropped)."""
  return max(1, num_train_examples // global_batch_size)


def total_train_steps(train_steps, train_epochs, steps_in_epoch: int) -> int:
  """`train_steps` if given, else `train_epochs` epochs rounded up to whole steps."""
  if train_steps is not None:
    return int(train_steps)
  return max(1, math.ceil(train_epochs * steps_in_epoch))


def scaled_learning_rate(learning_rate: float, global_batch_size: int,
                         reference_batch_size: int = defaults.REFERENCE_BATCH
                         ) -> float:
  """The linear scaling rule: `learning_rate` is for `reference_batch_size`."""
  return learning_rate * global_batch_size / reference_batch_size


def build_learning_rate_schedule(
    learning_rate: float,
    global_batch_size: int,
    steps_in_epoch: int,
    decay_rate: float = defaults.LR_DECAY_RATE,
    decay_epochs: float = defaults.LR_DECAY_EPOCHS,
    reference_batch_size: int = defaults.REFERENCE_BATCH,
) -> keras.optimizers.schedules.ExponentialDecay:
  """The paper's schedule: scaled base rate, x`decay_rate` every `decay_epochs`.

  Args:
    learning_rate: base rate for a batch of `reference_batch_size`.
    global_batch_size: examples per optimizer step over all replicas.
    steps_in_epoch: optimizer steps per epoch.
    decay_rate: multiplicative decay.
    decay_epochs: epochs between decays (staircase).
    reference_batch_size: the batch `learning_rate` is given for.

  Returns:
    A staircase `keras.optimizers.schedules.ExponentialDecay`.
  """
  return keras.optimizers.schedules.ExponentialDecay(
      initial_learning_rate=scaled_learning_rate(
          learning_rate, global_batch_size, reference_batch_size),
      decay_steps=decay_epochs * steps_in_epoch,
      decay_rate=decay_rate,
      staircase=True)


def build_optimizer(name: str,
                    learning_rate,
                    momentum: float = 0.9,
                    rho: float = 0.9,
                    epsilon: float = 1.0) -> keras.optimizers.Optimizer:
  """Builds the optimizer called `name`.

  Keras' RMSprop divides by sqrt(mean square + epsilon), like TF-slim's, so
  epsilon 1.0 means what it meant in the paper's recipe (it damps the first
  steps). Unlike TF1's RMSProp, Keras starts the mean square at 0, not 1.

  Args:
    name: "rmsprop", "sgd" (with momentum) or "adam".
    learning_rate: a float or a schedule.
    momentum: momentum of RMSProp and SGD.
    rho: RMSProp's discounting factor.
    epsilon: RMSProp's and Adam's epsilon.

  Raises:
    ValueError: unknown `name`.
  """
  if name == "rmsprop":
    return keras.optimizers.RMSprop(learning_rate=learning_rate, rho=rho,
                                    momentum=momentum, epsilon=epsilon)
  if name == "sgd":
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
  if name == "adam":
    return keras.optimizers.Adam(learning_rate=learning_rate, epsilon=epsilon)
  raise ValueError(f"Unknown optimizer {name!r}; valid choices: "
                   f"{', '.join(OPTIMIZERS)}.")


def is_kernel(variable) -> bool:
  """Whether weight decay applies: conv, depthwise and dense kernels only."""
  return bool(_KERNEL_NAME.search(variable.name))


def weight_decay_loss(variables, coefficient: float):
  """`coefficient` * sum of squares of the kernels among `variables` (0 if none)."""
  kernels = [v for v in variables if is_kernel(v)]
  if not kernels or coefficient == 0:
    return tf.constant(0.0)
  return coefficient * tf.add_n(
      [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in kernels])
