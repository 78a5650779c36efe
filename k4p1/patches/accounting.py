"""Parameter accounting of patches: what a task trains, stores and shares."""

import keras

from k4p1.patches import inject
from k4p1.patches import spec as spec_lib
from k4p1.patches import taps as taps_lib


def count_params(task_model: keras.Model) -> dict:
  """Counts a task model's parameters the way the paper's tables do.

  Returns:
    A dict with `patch_trainable` (what training updates), `patch_stored`
    (what the patch file holds: adds the task's BN statistics and variables
    frozen per variable, and leaves out the residuals of closed `taps`
    gates), `shared` (the base's variables the task reuses) and `total`
    (`patch_stored + shared`).
  """
  own = inject.named_patch_variables(task_model)
  closed = taps_lib.closed_residual_keys(inject.patch_info(task_model).patch_layers)
  trainable = sum(int(v.numpy().size) for v in own.values() if v.trainable)
  stored = sum(int(v.numpy().size) for k, v in own.items() if k not in closed)
  shared = sum(int(v.numpy().size) for v in inject.shared_variables(task_model))
  return {"patch_trainable": trainable, "patch_stored": stored,
          "shared": shared, "total": stored + shared}


def describe_targets(base: keras.Model, add_missing_scales: bool = False) -> dict:
  """What each patch kind targets in `base`: {kind: {"layers", "trainable"}}.

  Kinds that match no layer are left out; `logits` is model-independent.
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
    # By variable name, not `trainable_weights`: the base may already be frozen.
    trainable = sum(
        int(v.numpy().size) for l in layers for v in l.weights
        if (v.name in variables if variables is not None
            else "moving" not in v.name))
    if add_missing_scales and "gamma" in (variables or ()):
      trainable += sum(int(l.beta.shape[0]) for l in layers if not l.scale)
    table[kind] = {"layers": len(layers), "trainable": trainable}
  return table
