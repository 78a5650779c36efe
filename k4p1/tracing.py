"""`tf.function`s made per model, whose retracing statistics are their own.

TensorFlow warns "N out of the last N calls to <function> triggered
tf.function retracing" by counting traces per *Python code object*. k4p1 builds
one evaluation pass (and one PreciseBN pass) per task model from the same
closure, and each is traced exactly once; but a process that runs several
models (the demo, a multi-task run, a test session) traces that one code object
once per model, and TensorFlow reports it as retracing. `model_function` keys
the statistics on the function object itself, so a warning keeps its meaning:
one function traced again and again.
"""

from typing import Callable

import tensorflow as tf


class _PerObject:
  """Calls `fn`. Has no `__code__` or `__wrapped__`: TF keys statistics on it."""

  def __init__(self, fn: Callable):
    self._fn = fn
    self.__name__ = getattr(fn, "__name__", "model_function")

  def __call__(self, *args, **kwargs):
    return self._fn(*args, **kwargs)


def model_function(fn: Callable, **kwargs) -> Callable:
  """`tf.function(fn, **kwargs)` with its own retracing statistics.

  Args:
    fn: the Python function to trace (typically a closure over one model).
    **kwargs: `tf.function` arguments (`jit_compile`, `reduce_retracing`, ...).

  Returns:
    The `tf.function`.
  """
  return tf.function(_PerObject(fn), **kwargs)
