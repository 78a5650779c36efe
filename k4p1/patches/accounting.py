"""Parameter accounting of patches: what a task trains, stores and shares."""

import keras

from k4p1.patches import gates
from k4p1.patches import info as info_lib
from k4p1.patches import inject
from k4p1.patches import lora as lora_lib
from k4p1.patches import spec as spec_lib
from k4p1.patches import variables as variables_lib


def count_params(task_model: keras.Model) -> dict:
  """Counts a task model's parameters the way the paper's tables do.

  Returns:
    A dict with `patch_trainable` (what training updates), `patch_stored`
    (what the patch file holds: adds the task's BN statistics and variables
    frozen per variable, and leaves out the residuals of closed `taps`
    gates; a `lora` layer stores r * (k*k*C_in + C_out)), `shared` (the base's variables the task reuses) and `total`
    (`patch_stored + shared`).
  """
  own = variables_lib.named_patch_variables(task_model)
  closed = gates.closed_delta_keys(task_model)
  trainable = sum(int(v.numpy().size) for v in own.values() if v.trainable)
  stored = sum(int(v.numpy().size) for k, v in own.items() if k not in closed)
  shared = sum(int(v.numpy().size)
               for v in variables_lib.shared_variables(task_model))
  return {"patch_trainable": trainable, "patch_stored": stored,
          "shared": shared, "total": stored + shared}


def describe_targets(base: keras.Model, add_missing_scales: bool = False,
                     lora_rank: int = lora_lib.RANK) -> dict:
  """What each patch kind targets in `base`: {kind: {"layers", "trainable"}}.

  Kinds that match no layer are left out; `logits` is model-independent;
  `lora` is counted at rank `lora_rank`.
  """
  table = {}
  for kind in spec_lib.KINDS:
    if kind in ("logits", "full"):
      continue
    spec = spec_lib.PatchSpec(frozenset({kind}))
    try:
      layers = inject.target_layers(base, spec, add_missing_scales)
    except ValueError:
      continue
    variables = spec_lib.KIND_TARGETS[kind].variables
    if kind == "taps":  # A residual per kernel, and a score, per layer.
      table[kind] = {"layers": len(layers), "trainable": sum(
          int(l.kernel.numpy().size) + 1 for l in layers)}
      continue
    if kind == "lora":  # r * (k*k*C_in + C_out) per layer.
      table[kind] = {"layers": len(layers), "trainable": sum(
          lora_lib.factor_size(l.kernel.shape, lora_rank) for l in layers)}
      continue
    # By variable name, not `trainable_weights`: the base may already be frozen.
    trainable = sum(
        int(v.numpy().size) for l in layers for v in l.weights
        if (v.name in variables if variables is not None
            else "moving" not in v.name))
    if add_missing_scales and "gamma" in (variables or ()):
      trainable += sum(int(l.beta.shape[0]) for l in layers if not l.scale)
    table[kind] = {"layers": len(layers), "trainable": trainable}
  return table


def lora_summary(task_model) -> dict:
  """What a task's LoRA residuals are and cost; {} for a model without `lora`.

  Returns:
    {"rank", "alpha", "layers", "factor_params" (of every layer's A and B;
    with `taps`, closed layers' included), "by_layer_class": {class name:
    layers}}.
  """
  layers = gates.lora_layers(task_model)
  if not layers:
    return {}
  info = info_lib.patch_info(task_model)
  by_class = {}
  for layer in layers.values():
    kind = type(layer.base_layer).__name__
    by_class[kind] = by_class.get(kind, 0) + 1
  return {"rank": info.lora_rank, "alpha": info.lora_alpha,
          "layers": len(layers),
          "factor_params": sum(l.residual_size() for l in layers.values()),
          "by_layer_class": by_class}
