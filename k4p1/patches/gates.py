"""What a task model's TAPS gates do: which are open, what they cost, and export.

`k4p1.patches.taps` holds the gated layer itself; this module works on task
models (their `PatchInfo`), so it sits above the cloning pass (`inject`).
"""

import keras
import numpy as np

from k4p1.patches import inject
from k4p1.patches import taps


def gated_layers(task_model) -> dict:
  """{base layer name: GatedConv} of a model (empty without `taps`).

  Models not made by `apply_patch` (a pretraining run's, a cached-features
  head) have no gates either.
  """
  try:
    info = inject.patch_info(task_model)
  except ValueError:
    return {}
  return {name: layer for name, layer in info.patch_layers.items()
          if isinstance(layer, taps.GatedConv)}


def summary(task_model) -> dict:
  """Which layers a TAPS task patches, and what they cost.

  Returns:
    {"gated_layers", "open_layers", "open_fraction", "open_delta_params"
    (parameters of the open layers' residuals), "gated_params" (of every
    residual), "open": [open layer names], "scores": {layer: score}}; or {}
    for a model without `taps`.
  """
  gated = gated_layers(task_model)
  if not gated:
    return {}
  scores = {name: float(layer.score.numpy()) for name, layer in gated.items()}
  open_names = sorted(n for n, l in gated.items() if scores[n] >= l.threshold)
  sizes = {n: int(np.prod(l.delta.shape)) for n, l in gated.items()}
  by_class = {}
  for name, layer in gated.items():
    kind = type(layer.base_layer).__name__
    entry = by_class.setdefault(kind, {"gated": 0, "open": 0})
    entry["gated"] += 1
    entry["open"] += name in open_names
  return {"gated_layers": len(gated), "open_layers": len(open_names),
          "open_fraction": len(open_names) / len(gated),
          "open_delta_params": sum(sizes[n] for n in open_names),
          "gated_params": sum(sizes.values()),
          "by_layer_class": by_class, "open": open_names, "scores": scores}


def closed_delta_keys(task_model) -> set:
  """Patch-file keys (`<layer>/delta`) of residuals whose gate is closed."""
  return taps.closed_residual_keys(inject.patch_info(task_model).patch_layers)


def bake(task_model):
  """An equivalent task model without gates, for export.

  Open layers become plain copies of their base convolution (named
  `<layer>__<task>`) holding W_base + delta; closed layers are the base layer
  itself (shared). Every other layer is the task model's own object. Returns
  `task_model` itself if it has no gated layer.
  """
  gated = gated_layers(task_model)
  if not gated:
    return task_model
  info = inject.patch_info(task_model)
  copies = {}

  def clone_function(layer):
    if not isinstance(layer, taps.GatedConv):
      return layer
    base = layer.base_layer
    if not layer.is_open():
      return base
    config = base.get_config()
    config["name"] = layer.name
    copy = type(base).from_config(config)
    copies[layer] = copy
    return copy

  baked = keras.models.clone_model(task_model, clone_function=clone_function,
                                   recursive=True)
  for layer, copy in copies.items():
    copy.kernel.assign(layer.task_kernel())
    if layer.base_layer.use_bias:
      copy.bias.assign(layer.base_layer.bias.value)
  name_of = {id(l): n for n, l in gated.items()}
  patch_layers = {n: l for n, l in info.patch_layers.items() if n not in gated}
  patch_layers.update({name_of[id(l)]: c for l, c in copies.items()})
  shared = list(info.shared_layers)
  shared_ids = {id(l) for l in shared}
  shared += [l.base_layer for l in gated.values()
             if l not in copies and id(l.base_layer) not in shared_ids]
  inject.attach_info(baked, inject.PatchInfo(
      spec=info.spec, task=info.task, num_classes=info.num_classes,
      bn_stats=info.bn_stats, add_missing_scales=info.add_missing_scales,
      base=info.base, patch_layers=patch_layers, shared_layers=shared,
      head=info.head, head_is_patch=info.head_is_patch,
      bn_statistics=dict(info.bn_statistics), taps_threshold=None))
  return baked
