"""What a task model's residual layers do: which gates are open, what they
cost, and their export (`bake`).

`k4p1.patches.taps` and `k4p1.patches.lora` hold the layers that add a
residual to a base kernel (TAPS's `GatedConv`, `LoRALayer` and `GatedLoRA`);
this module works on task models (their `PatchInfo`, `info.py`). Gated
layers are TAPS's: `GatedConv` and, with `lora+taps`, `GatedLoRA`.
"""

import keras

from k4p1.patches import info as info_lib
from k4p1.patches import lora
from k4p1.patches import taps

GATED = (taps.GatedConv, lora.GatedLoRA)


def _patch_layers(task_model) -> dict:
  """The model's patch layers; {} for models not made by `apply_patch`."""
  try:
    return info_lib.patch_info(task_model).patch_layers
  except ValueError:
    return {}


def gated_layers(task_model) -> dict:
  """{base layer name: gated layer} of a model (empty without `taps`).

  Models not made by `apply_patch` (a pretraining run's, a cached-features
  head) have no gates either.
  """
  return {name: layer for name, layer in _patch_layers(task_model).items()
          if isinstance(layer, GATED)}


def lora_layers(task_model) -> dict:
  """{base layer name: LoRALayer (gated or not)} of a model (empty without `lora`)."""
  return {name: layer for name, layer in _patch_layers(task_model).items()
          if isinstance(layer, lora.LoRALayer)}


def closed_residual_keys(patch_layers: dict) -> set:
  """Patch-file keys (`<layer>/delta`, `<layer>/lora_a`, ...) of the residuals
  of closed gates among `patch_layers` (`PatchInfo.patch_layers`)."""
  return {f"{name}/{variable}" for name, layer in patch_layers.items()
          if isinstance(layer, GATED) and not layer.is_open()
          for variable in layer.RESIDUALS}


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
  sizes = {n: l.residual_size() for n, l in gated.items()}
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
  """Patch-file keys of the residuals whose gate is closed."""
  return closed_residual_keys(info_lib.patch_info(task_model).patch_layers)


def _replaced(layer, merge_lora: bool) -> bool:
  """Whether `bake` replaces residual layer `layer`."""
  if isinstance(layer, taps.GatedConv):
    return True
  return isinstance(layer, lora.LoRALayer) and (merge_lora or not layer.is_open())


def bake(task_model, merge_lora: bool = True):
  """An equivalent task model without gates (and merged LoRA), for export.

  Layers of closed gates become the base layer itself (shared). Open TAPS
  layers, and LoRA layers with `merge_lora`, become plain copies of their base
  layer (named `<layer>__<task>`) holding W_base + residual. Without
  `merge_lora`, open LoRA layers stay as they are (the factors unmerged: what
  a K-task export stores). Every other layer is the task model's own object.
  Returns `task_model` itself if no layer is replaced.
  """
  info = info_lib.patch_info(task_model)
  residual = {n: l for n, l in info.patch_layers.items()
              if _replaced(l, merge_lora)}
  if not residual:
    return task_model
  copies = {}

  def clone_function(layer):
    if not _replaced(layer, merge_lora):
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
  name_of = {id(l): n for n, l in residual.items()}
  patch_layers = {n: l for n, l in info.patch_layers.items() if n not in residual}
  patch_layers.update({name_of[id(l)]: c for l, c in copies.items()})
  shared = list(info.shared_layers)
  shared_ids = {id(l) for l in shared}
  shared += [l.base_layer for l in residual.values()
             if l not in copies and id(l.base_layer) not in shared_ids]
  info_lib.attach_info(baked, info_lib.PatchInfo(
      spec=info.spec, task=info.task, num_classes=info.num_classes,
      bn_stats=info.bn_stats, add_missing_scales=info.add_missing_scales,
      base=info.base, patch_layers=patch_layers, shared_layers=shared,
      head=info.head, head_is_patch=info.head_is_patch,
      bn_statistics=dict(info.bn_statistics), bn_init=dict(info.bn_init),
      taps_threshold=(info.taps_threshold if any(
          isinstance(l, GATED) for l in patch_layers.values()) else None),
      lora_rank=info.lora_rank, lora_alpha=info.lora_alpha))
  return baked
