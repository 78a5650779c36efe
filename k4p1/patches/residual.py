"""The layer every per-task kernel residual builds on: a base layer held outside tracking.

`taps.GatedConv` (a gated full residual) and `lora.LoRALayer` (low-rank
factors) each compute one layer of the shared base with a task's kernel. They
hold that base layer outside Keras' and TensorFlow's tracking: its kernel and
bias stay the base's objects and are not the wrapper's weights, so `weights`
holds exactly the task's patch and making the wrapper trainable never
unfreezes the base. `gates.py` reads every such layer through the same
interface: `base_layer`, `RESIDUALS`, `gate()`, `is_open()`,
`residual_size()` and `task_kernel()`.
"""

import keras
from keras import ops


def bias_and_activation(base, outputs, dtype):
  """The end of `base`'s own call on a kernel's output: its bias (in `dtype`,
  laid out for its data format) and its activation."""
  if base.use_bias:
    bias = ops.cast(base.bias, dtype)
    if getattr(base, "data_format", None) == "channels_first":
      bias = ops.reshape(bias, (1, -1) + (1,) * (len(outputs.shape) - 2))
    outputs = ops.add(outputs, bias)
  if base.activation is not None:
    outputs = base.activation(outputs)
  return outputs


class ResidualLayer(keras.layers.Layer):
  """A base layer (held by identity, untracked) that a task computes with its own kernel.

  Args:
    base_layer: a built layer of the base model; its dtype policy is the
      default of this layer's.
    **kwargs: `keras.layers.Layer` arguments (e.g. `name`).
  """
  KIND = ""  # The patch kind's name in messages ("TAPS", "LoRA").
  RESIDUALS = ()  # Variables a closed gate makes unused.

  def __init__(self, base_layer, **kwargs):
    kwargs.setdefault("dtype", base_layer.dtype_policy)
    super().__init__(**kwargs)
    object.__setattr__(self, "_base", base_layer)

  @property
  def base_layer(self):
    """The shared base layer whose kernel this layer adds to."""
    return self._base

  def compute_output_shape(self, input_shape):
    return self._base.compute_output_shape(input_shape)

  def get_config(self):
    # Not serialisable on its own (it needs the live base layer): task models
    # are saved as patch files (`save_patch`) and exported baked or merged
    # (`bake`).
    raise NotImplementedError(
        f"{self.name}: {self.KIND} layers are saved with k4p1.patches.save_patch and "
        "exported with k4p1.patches.gates.bake, not as Keras configs.")
