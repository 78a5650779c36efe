"""The layer-cloning pass that turns a base model and a `PatchSpec` into a task model.

`apply_patch` calls `keras.models.clone_model` with a clone function that
returns every shared layer as it is (so the task uses the base's variables, by
identity) and rebuilds every patch layer from its config under the name
`<layer>__<task>`, then copies the base's weights into it. `taps` and `lora`
wrap their layers instead (`WRAPPERS`: the base layer's kernel plus a per-task
residual). A new Dense head `logits__<task>` reads the pooled features. The
task model carries a `PatchInfo` saying what was made (`info.py`).

BatchNormalization semantics (Keras 3): a BN layer normalises with batch
statistics and updates its moving statistics only when called with
`training=True` *and* `layer.trainable`. `apply_patch` sets `trainable=False`
on every shared layer, so shared BN layers always run in inference mode with
the base's statistics. Patch BN layers are trainable: under `training=True`
they use batch statistics and update the task's own moving statistics, which
belong to the patch (`bn_stats="task"`). With `bn_stats="frozen"` they are
`FrozenStatsBatchNormalization` layers that always use the base's statistics.
"""

import keras

from k4p1.core import choices
from k4p1.core import names
from k4p1.patches import info as info_lib
from k4p1.patches import layers as patch_layers
from k4p1.patches import lora as lora_lib
from k4p1.patches import spec as spec_lib
from k4p1.patches import taps as taps_lib

BN_STATS = choices.BN_STATS
# Patch layers that wrap their base layer (read its kernel by identity) and
# add a per-task residual, instead of being rebuilt copies of it.
WRAPPERS = (taps_lib.GatedConv, lora_lib.LoRALayer)


def leaf_layers(model: keras.Model):
  """Yields the non-model layers of `model`, descending into nested models."""
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from leaf_layers(layer)
    elif not isinstance(layer, keras.layers.InputLayer):
      yield layer


def target_layers(base: keras.Model, spec, add_missing_scales: bool) -> list:
  """Base layers that become per-task copies; raises on kinds matching nothing."""
  leaves = list(leaf_layers(base))
  if spec.is_full:
    return leaves
  targets = []
  for kind in sorted(spec.kinds - {"logits"}):
    target = spec_lib.KIND_TARGETS[kind]
    matched = [l for l in leaves if isinstance(l, target.layer_classes)]
    if target.variables:
      # A BN layer qualifies if it has any targeted variable: `scale_bias` on
      # InceptionV3's scale-less BN is beta-only.
      matched = [l for l in matched
                 if any(_bn_has(l, v, add_missing_scales) for v in target.variables)]
    if not matched:
      usable = [k for k in spec_lib.KINDS
                if k in ("logits", "full") or _kind_matches(leaves, k, add_missing_scales)]
      hint = (" (its BatchNormalization layers have no gammas: pass "
              "add_missing_scales=True to add them)"
              if kind == "scale" and not add_missing_scales else "")
      raise ValueError(
          f"Patch kind {kind!r} matches no layer of model {base.name!r}{hint}; it "
          f"targets {spec_lib.KIND_TARGETS[kind].description}. Valid kinds for "
          f"this model: {', '.join(usable)}.")
    targets.extend(l for l in matched if l not in targets)
  return targets


def _bn_has(layer, variable: str, add_missing_scales: bool) -> bool:
  if variable == "gamma":
    return layer.scale or add_missing_scales
  if variable == "beta":
    return layer.center
  return True


def _kind_matches(leaves, kind, add_missing_scales) -> bool:
  target = spec_lib.KIND_TARGETS[kind]
  return any(
      isinstance(l, target.layer_classes) and
      (not target.variables or
       any(_bn_has(l, v, add_missing_scales) for v in target.variables))
      for l in leaves)


def _rebuild(layer, task: str, bn_stats: str, add_missing_scales: bool):
  """An unbuilt copy of `layer` from its config, named `<layer>__<task>`."""
  config = layer.get_config()
  config["name"] = f"{layer.name}__{task}"
  config["trainable"] = True
  cls = type(layer)
  if isinstance(layer, keras.layers.BatchNormalization):
    if add_missing_scales:
      config["scale"] = True  # Gamma is initialised to 1: outputs unchanged.
    if bn_stats == "frozen":
      cls = patch_layers.FrozenStatsBatchNormalization
  return cls.from_config(config)


def _copy_weights(source, target) -> None:
  """Assigns `source`'s variables to `target`'s same-named ones, exactly."""
  by_name = {v.name: v for v in source.weights}
  for variable in target.weights:
    if variable.name in by_name:  # An added gamma keeps its initial ones.
      variable.assign(by_name[variable.name].value)


def _validate(task, num_classes, head, spec, bn_stats):
  # TensorFlow name scopes (which layer names become) reject other characters.
  if not isinstance(task, str) or not names.MODEL_TASK_NAME.match(task):
    raise ValueError(f"Invalid task name {task!r}: start with a letter or digit, "
                     "then use letters, digits and '_.-' (TensorFlow name scopes "
                     "reject other characters, e.g. 'mnist5k:0-4' -> 'mnist5k_0-4').")
  if bn_stats not in BN_STATS:
    raise ValueError(f"bn_stats={bn_stats!r} is invalid; valid choices: "
                     f"{', '.join(BN_STATS)}.")
  if "stats" in spec and bn_stats == "frozen":
    raise ValueError(f"Patch spec '{spec}' gives the task its own BN "
                     "statistics ('stats'), which bn_stats='frozen' forbids; "
                     "use bn_stats='task', or drop 'stats'.")
  if spec.has_logits:
    if head is not None:
      raise ValueError(f"Patch spec '{spec}' creates its own head "
                       "('logits'); do not also pass head=.")
    if not isinstance(num_classes, int) or num_classes < 1:
      raise ValueError(f"num_classes={num_classes!r} is invalid: patch spec "
                       f"'{spec}' adds a head and needs a positive integer.")
  elif head is None:
    raise ValueError(
        f"Patch spec '{spec}' has no 'logits' kind, so the task needs a head "
        "shared with another task: pass head=<keras layer> (or add '+logits').")


def _wrap(layer, spec, name, taps_threshold, lora_rank, lora_alpha):
  """The residual layer wrapping base `layer` (None: `layer` is rebuilt).

  `lora` wraps Conv2D and Dense layers in a `LoRALayer` (with `taps`: a
  `GatedLoRA`); `taps` wraps the other convolutions (DepthwiseConv2D, and
  Conv2D without `lora`) in a `GatedConv`. The wrapper reads the base layer's
  kernel, which stays shared (and frozen).
  """
  if spec.has_lora and isinstance(layer, lora_lib.LORA_CLASSES):
    if spec.is_taps:
      return lora_lib.GatedLoRA(layer, lora_rank, lora_alpha, taps_threshold,
                                name=name)
    return lora_lib.LoRALayer(layer, lora_rank, lora_alpha, name=name)
  if spec.is_taps and isinstance(layer, taps_lib.GATED_CLASSES):
    return taps_lib.GatedConv(layer, taps_threshold, name=name)
  return None


def apply_patch(base: keras.Model,
                spec,
                task: str,
                num_classes: int | None = None,
                head: keras.layers.Layer | None = None,
                bn_stats: str = "task",
                add_missing_scales: bool = False,
                taps_threshold: float = taps_lib.THRESHOLD,
                lora_rank: int = lora_lib.RANK,
                lora_alpha: float | None = None) -> keras.Model:
  """Builds a task model that shares every non-patch variable with `base`.

  Side effect: every layer of `base` that the task shares gets
  `trainable=False` (shared layers are frozen; shared BN layers run in
  inference mode). Training several task models of one base therefore moves
  only their patches. A trainer that also trains the shared weights unfreezes
  them with `set_shared_trainable`.

  Args:
    base: a functional feature extractor whose output is a feature vector
      (e.g. from `k4p1.models.build_backbone`).
    spec: a `PatchSpec` or its string, e.g. `"scale_bias+logits"`.
    task: the task's name; patch layers are named `<layer>__<task>`.
    num_classes: output size of the new head (specs with `logits`).
    head: a layer shared with other tasks (specs without `logits`).
    bn_stats: `"task"`: patch BN layers keep the task's own moving statistics,
      re-estimated in training; `"frozen"`: they keep the base's statistics.
    add_missing_scales: give scale-less BN layers (InceptionV3) gammas
      initialised to 1, so `scale_bias` and `scale` can train them.
    taps_threshold: `taps` gates open where a layer's score is >= this.
    lora_rank: `lora`: the rank r of every residual.
    lora_alpha: `lora`: residuals are scaled by alpha / r (None: alpha = r).

  Returns:
    A `keras.Model` mapping the base's inputs to logits. Right after
    injection its features equal the base's exactly.

  Raises:
    ValueError: bad spec, task name, bn_stats, num_classes or head, a bad
      `taps` or `lora` setting, a kind that matches no layer of `base`, or a
      base without a feature vector.
  """
  spec = spec_lib.PatchSpec.parse(spec)
  _validate(task, num_classes, head, spec, bn_stats)
  if spec.is_taps:
    taps_lib.check_threshold(taps_threshold)
  if spec.has_lora:
    lora_lib.check_settings(lora_rank, lora_alpha)
  if len(base.outputs) != 1 or len(base.outputs[0].shape) != 2:
    raise ValueError(
        f"Base model {base.name!r} must output one feature vector [batch, "
        f"features]; its outputs are {[tuple(o.shape) for o in base.outputs]}. "
        "Build it with pooling='avg'.")
  targets = target_layers(base, spec, add_missing_scales)
  target_ids = {id(l) for l in targets}
  copies = {}

  def clone_function(layer):
    if id(layer) not in target_ids:
      return layer  # Shared by identity.
    copy = (_wrap(layer, spec, f"{layer.name}__{task}", taps_threshold,
                  lora_rank, lora_alpha)
            or _rebuild(layer, task, bn_stats, add_missing_scales))
    copies[layer.name] = (layer, copy)
    return copy

  features = keras.models.clone_model(base, clone_function=clone_function,
                                      recursive=True)
  for source, copy in copies.values():
    if isinstance(copy, WRAPPERS):
      continue  # Reads the base's variables; its own are initialised.
    _copy_weights(source, copy)
    if not spec.is_full and isinstance(copy, keras.layers.BatchNormalization):
      for variable in copy.trainable_weights:
        if variable.name not in spec.bn_variables:
          variable.trainable = False  # E.g. `scale` alone freezes beta.

  wrapped = {id(s) for s, c in copies.values() if isinstance(c, WRAPPERS)}
  shared = [l for l in leaf_layers(base)
            if id(l) not in target_ids or id(l) in wrapped]
  for layer in shared:
    layer.trainable = False
  head_is_patch = head is None
  if head_is_patch:
    head = keras.layers.Dense(num_classes, name=f"{info_lib.HEAD_KEY}__{task}")
  logits = head(features.outputs[0])
  model = keras.Model(features.input, logits, name=task)
  info = info_lib.PatchInfo(
      spec=spec, task=task, num_classes=int(head.units),
      bn_stats=bn_stats, add_missing_scales=add_missing_scales, base=base,
      patch_layers={name: copy for name, (_, copy) in copies.items()},
      shared_layers=shared, head=head, head_is_patch=head_is_patch,
      taps_threshold=float(taps_threshold) if spec.is_taps else None,
      lora_rank=int(lora_rank) if spec.has_lora else None,
      lora_alpha=(lora_lib.resolved_alpha(lora_rank, lora_alpha)
                  if spec.has_lora else None))
  info_lib.attach_info(model, info)
  return model
