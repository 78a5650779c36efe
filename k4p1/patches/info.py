"""The patch metadata a task model carries: its `PatchInfo`.

`apply_patch` (`inject.py`) attaches it to the task model it makes, and
`gates.bake` to its baked copy; everything that reads a task model's patch
(saving, counting, serving, export) starts from `patch_info`.
"""

import dataclasses

import keras

from k4p1.patches import spec as spec_lib

# A task's own head: its key in patch files and its layer name's prefix.
HEAD_KEY = "logits"


@dataclasses.dataclass
class PatchInfo:
  """What `apply_patch` made; attached to the task model it describes.

  Attributes:
    spec: the normalised `PatchSpec`.
    task: the task name.
    num_classes: the head's output size.
    bn_stats: `"task"` or `"frozen"`.
    add_missing_scales: whether gammas were added to scale-less BN layers.
    base: the base model whose variables the task shares.
    patch_layers: base layer name -> the task's copy of that layer.
    shared_layers: the base's layers the task uses as they are.
    head: the task's Dense head.
    head_is_patch: whether the head is the task's own (False when passed in).
    bn_statistics: how the moving statistics of the task's training-mode BN
      layers were last set: {"method": "moving_average"} (training's
      exponential averages) or {"method": "precise_bn", ...} (population
      statistics, `k4p1.train.precise_bn`). Saved in spec.json.
    bn_init: how the scales, biases and statistics of those layers started:
      {"method": "copy"} (the base's values, as injected) or {"method":
      "preserve", ...} (`k4p1.train.bn_init`). Saved in spec.json.
    taps_threshold: the gate threshold of `taps` layers (None without them).
    lora_rank: the rank of `lora` residuals (None without them).
    lora_alpha: their alpha (scale alpha / rank; None without them).
  """
  spec: spec_lib.PatchSpec
  task: str
  num_classes: int
  bn_stats: str
  add_missing_scales: bool
  base: keras.Model
  patch_layers: dict
  shared_layers: list
  head: keras.layers.Layer
  head_is_patch: bool
  bn_statistics: dict = dataclasses.field(
      default_factory=lambda: {"method": "moving_average"})
  bn_init: dict = dataclasses.field(default_factory=lambda: {"method": "copy"})
  taps_threshold: float | None = None
  lora_rank: int | None = None
  lora_alpha: float | None = None


# The attribute of a task model that holds its `PatchInfo`. Set with
# `object.__setattr__`, past Keras' and TensorFlow's attribute tracking: the
# info's layers and base model must not become the task model's sublayers or
# checkpoint dependencies, and its dict and lists must not be wrapped. The info
# lives and dies with its model (no global registry keeps models alive).
_INFO_ATTRIBUTE = "_k4p1_patch_info"


def attach_info(task_model: keras.Model, info: PatchInfo) -> None:
  """Attaches `info` to `task_model` (see `_INFO_ATTRIBUTE`)."""
  object.__setattr__(task_model, _INFO_ATTRIBUTE, info)


def patch_info(task_model: keras.Model) -> PatchInfo:
  """Returns the `PatchInfo` of a model made by `apply_patch` or `load_patch`.

  Raises:
    ValueError: the model was not made by `apply_patch`.
  """
  info = getattr(task_model, _INFO_ATTRIBUTE, None)
  if not isinstance(info, PatchInfo):
    raise ValueError(f"Model {getattr(task_model, 'name', task_model)!r} was "
                     "not made by k4p1.patches.apply_patch (or load_patch).")
  return info


def set_bn_statistics(model: keras.Model, record: dict) -> None:
  """Records how a task model's BN statistics were set (no-op for other models)."""
  info = getattr(model, _INFO_ATTRIBUTE, None)
  if isinstance(info, PatchInfo):
    info.bn_statistics = dict(record)


def set_bn_init(model: keras.Model, record: dict) -> None:
  """Records how a task model's BN layers were initialised (no-op for other models)."""
  info = getattr(model, _INFO_ATTRIBUTE, None)
  if isinstance(info, PatchInfo):
    info.bn_init = dict(record)

