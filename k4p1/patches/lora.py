"""LoRA: per-task low-rank residuals on the base's kernels (Hu et al., 2021).

The `lora` patch kind wraps every Conv2D and Dense layer of the base in a
`LoRALayer`, which computes the base layer with the kernel

    W_task = W_base + (alpha / r) * reshape(A @ B)

with `W_base` the base layer's own kernel (shared by identity and frozen),
`A` of shape `kernel.shape[:-1] + (r,)` ([k, k, C_in, r] for a convolution,
[C_in, r] for a Dense layer: a [k*k*C_in, r] matrix kept in the kernel's
layout) and `B` of shape [r, C_out]. `B` starts at zeros, so outputs equal the
base's exactly at injection; `A` starts Kaiming-uniform as in the LoRA
reference code and PEFT (`kaiming_uniform_(a=sqrt(5))`: U(+-1/sqrt(fan_in)),
fan_in = k*k*C_in), so that `B` gets a gradient on the first step. A layer
stores r * (k*k*C_in + C_out) parameters per task (`factor_size`).

Training computes the residual on the activations, `conv(x, W_base) +
(alpha/r) * conv1x1(conv(x, A), B)`: the same function as the merged kernel,
without the full kernel's gradient that the merged form would need (a step
costs a frozen base's backward pass plus the factors'). Exports merge the
factors into the kernel (`task_kernel`, `k4p1.patches.gates.bake`) for one
task, and keep them unmerged in K-task files.

Depthwise convolutions are refused: this factorisation of a [k, k, C, 1]
depthwise kernel has an output axis of size 1, so `A` alone is r times the
kernel (the `depthwise` kind trains those kernels whole). Under mixed
precision the factors are float32 variables, like the kernels, and the
residual path runs in the compute dtype, like the convolution it adds to.

`lora+taps` puts each residual behind a TAPS gate (`GatedLoRA`): the gate of a
Conv2D or Dense layer decides whether it gets its low-rank residual, and
DepthwiseConv2D layers keep TAPS's full gated residual (`taps.GatedConv`).
"""

import math

import keras
from keras import ops
import numpy as np

from k4p1.core import defaults
from k4p1.patches import residual
from k4p1.patches import taps

LORA_CLASSES = (keras.layers.Conv2D, keras.layers.Dense)
LORA_A, LORA_B = "lora_a", "lora_b"
RANK = defaults.LORA_RANK
# PEFT's kaiming_uniform_(a=sqrt(5)): gain^2 = 2 / (1 + 5) = 1/3, so the bound
# is sqrt(3 * (1/3) / fan_in) = 1/sqrt(fan_in).
_A_INITIALIZER_SCALE = 1.0 / 3.0


def check_settings(rank, alpha) -> None:
  """Raises ValueError (naming the valid range) for a bad rank or alpha."""
  if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
    raise ValueError(f"lora_rank must be an integer >= 1, got {rank!r}.")
  if alpha is not None and (
      isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number))
      or not math.isfinite(alpha) or alpha <= 0):
    raise ValueError(f"lora_alpha must be a finite number > 0 (or None: the "
                     f"rank, a scale of 1), got {alpha!r}.")


def resolved_alpha(rank: int, alpha) -> float:
  """alpha, or the rank when alpha is None (LoRA's default: scale 1)."""
  return float(rank if alpha is None else alpha)


def factor_shapes(kernel_shape, rank: int) -> tuple:
  """(A's shape, B's shape) for a kernel [..., C_in, C_out] at rank `rank`."""
  kernel_shape = tuple(int(d) for d in kernel_shape)
  return kernel_shape[:-1] + (rank,), (rank, kernel_shape[-1])


def factor_size(kernel_shape, rank: int) -> int:
  """r * (k*k*C_in + C_out): the parameters of one layer's factors."""
  a, b = factor_shapes(kernel_shape, rank)
  return int(np.prod(a) + np.prod(b))


def _check_base(base_layer) -> None:
  if isinstance(base_layer, keras.layers.DepthwiseConv2D):
    raise ValueError(
        f"LoRA does not patch DepthwiseConv2D {base_layer.name!r}: its kernel "
        "[k, k, C, 1] has an output axis of size 1, so the factor A "
        "[k, k, C, r] alone is r times the kernel. Use 'depthwise' (the "
        "kernel, whole) or 'taps' (a gated full residual) for those layers.")
  if not isinstance(base_layer, LORA_CLASSES):
    raise ValueError(f"LoRALayer wraps Conv2D or Dense layers, not "
                     f"{type(base_layer).__name__} {base_layer.name!r}.")
  if isinstance(base_layer, keras.layers.Conv2D) and base_layer.groups != 1:
    raise ValueError(f"LoRA does not patch grouped Conv2D {base_layer.name!r} "
                     f"(groups={base_layer.groups}).")


class LoRALayer(residual.ResidualLayer):
  """A base Conv2D or Dense layer plus a per-task low-rank kernel residual.

  The base layer is held outside tracking (`residual.ResidualLayer`, as for
  `taps.GatedConv`), so `weights` holds exactly the task's factors.

  Args:
    base_layer: a built `Conv2D` (groups=1) or `Dense` layer of the base.
    rank: r, the factors' inner dimension.
    alpha: the residual is scaled by alpha / r (None: alpha = r).
    **kwargs: `keras.layers.Layer` arguments (e.g. `name`).
  """
  KIND = "LoRA"
  RESIDUALS = (LORA_A, LORA_B)

  def __init__(self, base_layer, rank: int = RANK, alpha=None, **kwargs):
    super().__init__(base_layer, **kwargs)
    _check_base(base_layer)
    check_settings(rank, alpha)
    self.rank, self.alpha = int(rank), resolved_alpha(rank, alpha)
    self.scale = self.alpha / self.rank
    a_shape, b_shape = factor_shapes(base_layer.kernel.shape, self.rank)
    dtype = base_layer.kernel.dtype
    self.lora_a = self.add_weight(
        name=LORA_A, shape=a_shape, dtype=dtype,
        initializer=keras.initializers.VarianceScaling(
            _A_INITIALIZER_SCALE, mode="fan_in", distribution="uniform"))
    self.lora_b = self.add_weight(name=LORA_B, shape=b_shape, dtype=dtype,
                                  initializer="zeros")
    self.built = True

  def gate(self):
    """1.0: an ungated residual is always on (`GatedLoRA` learns its gate)."""
    return ops.ones((), self.lora_a.dtype)

  def is_open(self) -> bool:
    return True

  def residual_size(self) -> int:
    return int(np.prod(self.lora_a.shape) + np.prod(self.lora_b.shape))

  def delta(self):
    """(alpha / r) * A @ B in the kernel's shape (the variables' dtype)."""
    a = ops.reshape(self.lora_a, (-1, self.rank))
    return ops.reshape(self.scale * ops.matmul(a, self.lora_b),
                       tuple(self._base.kernel.shape))

  def task_kernel(self):
    """W_base + gate * (alpha / r) * A @ B: the kernel the task uses."""
    gate = ops.cast(self.gate(), self.lora_a.dtype)
    return self._base.kernel + gate * self.delta()

  def call(self, inputs):
    base, dtype = self._base, self.compute_dtype
    kernel = ops.cast(base.kernel, dtype)
    a, b = ops.cast(self.lora_a, dtype), ops.cast(self.lora_b, dtype)
    coefficient = ops.cast(self.gate() * self.scale, dtype)
    if isinstance(base, keras.layers.Dense):
      outputs = ops.matmul(inputs, kernel)
      low = ops.matmul(ops.matmul(inputs, a), b)
    else:
      outputs = base.convolution_op(inputs, kernel)
      # conv(x, A) then a 1x1 convolution by B: conv(x, reshape(A @ B)).
      low = base.convolution_op(inputs, a)
      low = ops.conv(low, ops.reshape(b, (1, 1) + tuple(b.shape)),
                     data_format=base.data_format)
    outputs = ops.add(outputs, coefficient * low)
    return residual.bias_and_activation(base, outputs, dtype)


class GatedLoRA(LoRALayer):
  """`LoRALayer` behind a TAPS gate (`lora+taps`): W_base + I(s >= tau) * delta.

  Args:
    base_layer, rank, alpha: as `LoRALayer`.
    threshold: the gate opens where the score is >= this.
    score_init: the score's initial value (above the threshold: open).
    **kwargs: `keras.layers.Layer` arguments (e.g. `name`).
  """

  def __init__(self, base_layer, rank: int = RANK, alpha=None,
               threshold: float = taps.THRESHOLD,
               score_init: float = taps.SCORE_INIT, **kwargs):
    super().__init__(base_layer, rank, alpha, **kwargs)
    self.threshold, self.score_init = float(threshold), float(score_init)
    self.score = self.add_weight(
        name=taps.SCORE, shape=(),
        initializer=keras.initializers.Constant(score_init), dtype="float32")

  def gate(self):
    """The gate's value (0.0 or 1.0), with the straight-through gradient."""
    return ops.cast(taps.straight_through_gate(self.score, self.threshold),
                    self.lora_a.dtype)

  def is_open(self) -> bool:
    return bool(self.score.numpy() >= self.threshold)


def stacked_factors(base_layer, copies) -> tuple:
  """Each task's factors of `base_layer`, stacked for a K-task file.

  Args:
    base_layer: a base layer that at least one task wraps in a `LoRALayer`.
    copies: each task's layer for it: a `LoRALayer` (open), or `base_layer`
      itself (no residual there: zero factors).

  Returns:
    (A [K, ..., R], B [K, R, C_out]) as float32 arrays, R the largest rank:
    smaller ranks are padded with zeros, and each task's scale (alpha / r,
    times its gate) is folded into its B, so the task's kernel is
    W_base + reshape(A_k @ B_k).

  Raises:
    ValueError: a task has another copy of the layer (not stackable).
  """
  ranks = [c.rank for c in copies if isinstance(c, LoRALayer)]
  a_shape, b_shape = factor_shapes(base_layer.kernel.shape, max(ranks))
  a_all = np.zeros((len(copies),) + a_shape, np.float32)
  b_all = np.zeros((len(copies),) + b_shape, np.float32)
  for k, copy in enumerate(copies):
    if copy is base_layer:
      continue
    if not isinstance(copy, LoRALayer) or copy.base_layer is not base_layer:
      raise ValueError(
          f"Layer {base_layer.name!r} has a LoRA residual in one task and "
          f"another copy ({type(copy).__name__} {copy.name!r}) in another: "
          "they cannot be stacked into one file; use export_task per task.")
    gate = float(ops.convert_to_numpy(copy.gate()))
    a_all[k, ..., :copy.rank] = copy.lora_a.numpy()
    b_all[k, :copy.rank] = copy.lora_b.numpy() * (copy.scale * gate)
  return a_all, b_all


def merged_kernel(kernel, a, b):
  """kernel + reshape(a @ b): a kernel from unmerged (scale-folded) factors."""
  rank = int(a.shape[-1])
  delta = ops.matmul(ops.reshape(a, (-1, rank)), b)
  return kernel + ops.reshape(delta, tuple(kernel.shape))
