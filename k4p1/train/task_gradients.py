"""One traced gradient computation shared by the K task models of one base.

The K task models of a multi-task run are clones of one base with one patch
spec: the same layers computing the same ops, only some variables differ. If
the training step called each model directly, its graph would hold K copies
of the forward and backward pass (at 96 px, ~100 MB of graph and executor per
MobileNetV2 task, more than one task's activations). Instead, each group of
identical task models is traced once, as a function of the variables' *values*
(Keras' `StatelessScope`, the mechanism of `Layer.stateless_call`), and the
step calls it once per task with that task's values, then writes back the BN
statistics the call updated.

Models are grouped when `apply_patch` made them from the same base with equal
patch settings and their variables have equal shapes and dtypes; any other
model gets its own function (what calling it directly would cost). The
function calls the template's fused view (`k4p1.train.fused_batch_norm`),
which reads and updates the template's own variables.
"""

from typing import Callable, Optional, Sequence

import keras
import tensorflow as tf

from k4p1 import patches
from k4p1.train import fused_batch_norm as fused_batch_norm_lib


def backing_variable(variable):
  """The tf.Variable behind a Keras variable (what a tape can watch)."""
  if isinstance(variable, keras.Variable):
    return variable.value  # Outside a layer call: the variable, not a cast.
  return variable


def _read(variable) -> tf.Tensor:
  """The current value of a Keras (or TF) variable, as a tensor."""
  return tf.convert_to_tensor(backing_variable(variable))


def structure_key(model: keras.Model):
  """Models with equal keys compute the same function of their variables."""
  try:
    info = patches.patch_info(model)
  except ValueError:
    return ("model", id(model))
  shapes = tuple((tuple(v.shape), v.dtype, v.trainable) for v in model.variables)
  return ("patch", id(info.base), repr(info.spec), info.num_classes,
          info.bn_stats, info.add_missing_scales, info.head_is_patch,
          info.taps_threshold, info.lora_rank, info.lora_alpha,
          tuple(model.input_shape), shapes)


class TaskGradients:
  """Computes a task's loss gradients with a function traced once per group.

  Call it inside the (traced) training step, once per task:

  ```python
  out = task_gradients(model, images, labels, num_classes, global_batch_size,
                       watched=[model.trainable_variables[i] ...])
  out["gradients"]  # one per `watched` variable (None: no path to the loss)
  ```

  The moving statistics the forward pass updated are assigned to the task's
  own variables before the call returns.
  """

  def __init__(self, models: Sequence[keras.Model], loss_fn: Callable,
               loss_scale: Optional[Callable] = None,
               fused_batch_norm: bool = True):
    """Groups `models` by `structure_key`; one template model per group.

    Args:
      models: the task models the step trains.
      loss_fn: (labels, logits, num_classes) -> per-example losses.
      loss_scale: objective -> scaled objective (mixed_float16), or None.
      fused_batch_norm: run each template's fused view
        (`fused_batch_norm.fused_view`: same results, much faster on CPU);
        False: the template itself (Keras' BN ops).
    """
    self._loss_fn = loss_fn
    self._loss_scale = loss_scale
    self.fused_batch_norm = fused_batch_norm
    self._keys = {id(m): structure_key(m) for m in models}
    groups = {}
    for model in models:
      groups.setdefault(self._keys[id(model)], []).append(model)
    self._functions, self._own = {}, {}
    for key, members in groups.items():
      template = members[0]
      # Variables every member shares (the frozen base) are read by the
      # function itself; only the others (the patches) are passed per call.
      own = tuple(i for i, v in enumerate(template.variables)
                  if any(m.variables[i] is not v for m in members[1:]))
      self._own[key] = own
      forward = (fused_batch_norm_lib.fused_view(template) if fused_batch_norm
                 else template)
      self._functions[key] = tf.function(
          self._make_body(template, forward, own),
          # Kept a separate function at run time: inlined, its body would be
          # copied into the step once per task again.
          experimental_attributes={"_noinline": True})

  @property
  def num_traced_models(self) -> int:
    """How many distinct model graphs the step holds."""
    return len(self._functions)

  def _make_body(self, template: keras.Model, forward: Callable,
                 own: Sequence[int]):
    template_variables = template.variables

    def body(own_values, images, labels, watched, num_classes,
             global_batch_size):
      values = dict(zip(own, own_values))
      watched_values = [values[i] if i in values else
                        backing_variable(template_variables[i]) for i in watched]
      with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(watched_values)
        mapping = [(template_variables[i], values[i]) for i in own]
        with keras.StatelessScope(state_mapping=mapping) as scope:
          before = [scope.get_current_value(v) for v in template_variables]
          logits = forward(images, training=True)  # `template`'s variables.
          after = [scope.get_current_value(v) for v in template_variables]
        losses = self._loss_fn(labels, logits, num_classes)
        loss_sum = tf.reduce_sum(losses)
        objective = loss_sum / global_batch_size
        if self._loss_scale is not None:
          objective = self._loss_scale(objective)
      gradients = tape.gradient(objective, watched_values)
      predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
      hits = tf.equal(predictions, tf.cast(labels, tf.int32))
      # What the call assigned (BN statistics in training mode): a new value
      # in the scope; untouched passed values are the input tensors, and
      # untouched shared variables have none.
      updates = {i: new for i, (old, new) in enumerate(zip(before, after))
                 if new is not None and new is not old}
      return {"gradients": gradients, "updates": updates,
              "loss_sum": loss_sum,
              "correct": tf.reduce_sum(tf.cast(hits, tf.float32)),
              "count": tf.cast(tf.size(labels), tf.float32)}
    return body

  def __call__(self, model: keras.Model, images, labels, num_classes: int,
               global_batch_size: int, watched: Sequence) -> dict:
    """Runs the group's function with `model`'s variable values.

    Args:
      model: one of the models given to the constructor.
      images, labels: this task's (per-replica) batch.
      num_classes: the model's number of classes.
      global_batch_size: the loss is summed per example, divided by this.
      watched: the model's trainable variables to differentiate (by identity).

    Returns:
      {"gradients": [one per `watched`], "loss_sum", "correct", "count"}.
    """
    key = self._keys[id(model)]
    variables = model.variables
    position = {id(v): i for i, v in enumerate(variables)}
    indices = tuple(position[id(v)] for v in watched)
    out = self._functions[key](
        [_read(variables[i]) for i in self._own[key]], images, labels,
        indices, num_classes, global_batch_size)
    for index, value in out.pop("updates").items():
      variables[index].assign(value)
    return out
