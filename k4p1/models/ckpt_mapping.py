"""Which checkpoint variable fills each weight of a Keras backbone.

The tables live in `checkpoint_names`; this module applies them to a built
`keras.applications` model. MobileNetV2 layers are matched by their (stable)
Keras names. InceptionV3's conv/BN layers have automatic names numbered per
process (`conv2d_94` in the second model built), so they are matched by
construction order, recovered from the functional graph.
"""

import keras

from k4p1.models import checkpoint_names as names


def layer_kind(layer):
  """"depthwise", "conv", "bn", or None for layers without table entries."""
  if isinstance(layer, keras.layers.DepthwiseConv2D):
    return "depthwise"
  if isinstance(layer, keras.layers.Conv2D):
    return "conv"
  if isinstance(layer, keras.layers.BatchNormalization):
    return "bn"
  return None


def _slim_leaf(kind, variable):
  """Slim's name for a Keras variable of a conv/depthwise/BN layer, or None."""
  if kind == "conv" and variable.name == "kernel":
    return "weights"
  if kind == "depthwise" and variable.name in ("kernel", "depthwise_kernel"):
    return "depthwise_weights"
  if kind == "bn" and variable.name in ("gamma", "beta", "moving_mean",
                                        "moving_variance"):
    return variable.name
  return None


def _construction_order(model):
  """Layers of a functional `model` in the order its builder created them.

  A post-order walk from the outputs that visits each layer's inputs in call
  order (`concatenate([b0, b1, ...])` visits b0 first) reproduces the order of
  Keras application code that builds branch after branch. Used for
  InceptionV3, whose conv/BN layers have process-dependent automatic names.
  """
  order, seen = [], set()
  # pylint: disable=protected-access
  stack = [(t._keras_history, False) for t in reversed(model.outputs)]
  while stack:
    history, expanded = stack.pop()
    layer = history.operation
    if expanded:
      order.append(layer)
      continue
    if id(layer) in seen:
      continue
    seen.add(id(layer))
    stack.append((history, True))
    node = layer._inbound_nodes[history.node_index]
    for tensor in reversed(node.input_tensors):
      if id(tensor._keras_history.operation) not in seen:
        stack.append((tensor._keras_history, False))
  return order


def _mobilenet_v2_targets(model, kind):
  """(variable, checkpoint name) for MobileNetV2; None for unmapped weights."""
  if kind == "ssd_tf2":
    index = {n: i for i, n in
             enumerate(names.MOBILENET_V2_KERAS_WEIGHTED_LAYERS)}
    path = "/".join(names.SSD_TF2_BACKBONE_PATHS[0])
  else:
    base = names.SLIM_SCOPE["mobilenet_v2"] + "/"
    if kind == "ssd_tf1":
      base = names.SSD_TF1_PREFIX + base
  targets = []
  for layer in model.layers:
    this_kind = layer_kind(layer)
    for variable in layer.weights:
      name = None
      if kind == "ssd_tf2" and layer.name in index and this_kind:
        tf2_name = names.TF2_VARIABLE_NAMES[this_kind].get(
            "kernel" if variable.name == "depthwise_kernel" else variable.name)
        if tf2_name:
          child = names.SSD_TF2_LAYER_CHILD.format(index[layer.name])
          name = f"{path}/{child}/{tf2_name}{names.TF2_KEY_SUFFIX}"
      elif kind != "ssd_tf2" and layer.name in names.MOBILENET_V2_SLIM_SCOPES:
        leaf = _slim_leaf(this_kind, variable)
        if leaf:
          name = base + names.MOBILENET_V2_SLIM_SCOPES[layer.name] + "/" + leaf
      targets.append((variable, name, layer.name))
  return targets


def _inception_v3_targets(model):
  order = _construction_order(model)
  convs = [l for l in order if layer_kind(l) == "conv"]
  norms = [l for l in order if layer_kind(l) == "bn"]
  expected = len(names.INCEPTION_V3_CONV_SCOPES)
  if len(convs) != expected or len(norms) != expected:
    raise ValueError(
        f"{model.name} has {len(convs)} Conv2D and {len(norms)} "
        "BatchNormalization layers; keras.applications.InceptionV3 "
        f"(include_top=False) has {expected} of each.")
  scope_of = {}
  for conv, norm, scope in zip(convs, norms, names.INCEPTION_V3_CONV_SCOPES):
    scope_of[id(conv)] = scope
    scope_of[id(norm)] = scope + "/BatchNorm"
  base = names.SLIM_SCOPE["inception_v3"] + "/"
  targets = []
  for layer in model.layers:
    for variable in layer.weights:
      leaf = _slim_leaf(layer_kind(layer), variable)
      name = (base + scope_of[id(layer)] + "/" + leaf
              if leaf and id(layer) in scope_of else None)
      targets.append((variable, name, layer.name))
  return targets


def map_model_weights(model, kind: str, architecture: str):
  """Maps every weight of `model` to its variable name in a `kind` checkpoint.

  Args:
    model: a `keras.applications` MobileNetV2 / InceptionV3 (include_top=False).
    kind: "slim", "ssd_tf1" or "ssd_tf2".
    architecture: "mobilenet_v2" or "inception_v3".

  Returns:
    A list of `(keras_variable, checkpoint_name)`, one per weight of `model`,
    in `model.weights` order; `checkpoint_name` is None for a weight no table
    covers. For "ssd_tf2" the name is the canonical object-graph key
    (`model/_feature_extractor/classification_backbone/...`).

  Raises:
    ValueError: unknown kind, or an architecture the kind cannot fill.
  """
  return [(variable, name)
          for variable, name, _ in model_targets(model, kind, architecture)]


def check_architecture(kind, architecture):
  """Raises ValueError unless a `kind` checkpoint can fill `architecture`."""
  if kind not in names.SOURCE_ARCHITECTURES:
    raise ValueError(f"Unknown checkpoint kind {kind!r}; valid choices: "
                     f"{sorted(names.SOURCE_ARCHITECTURES)}.")
  valid = names.SOURCE_ARCHITECTURES[kind]
  if architecture not in valid:
    raise ValueError(f"A {kind!r} checkpoint cannot fill architecture "
                     f"{architecture!r}; valid choices for {kind!r}: "
                     f"{', '.join(valid)}.")


def model_targets(model, kind, architecture):
  """Like `map_model_weights`, with the Keras layer name as a third item."""
  check_architecture(kind, architecture)
  if architecture == "mobilenet_v2":
    return _mobilenet_v2_targets(model, kind)
  return _inception_v3_targets(model)
