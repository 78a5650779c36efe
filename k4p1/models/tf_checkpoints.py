"""Loads TF-slim and Object Detection API checkpoints into Keras backbones.

Sources (`weights=` of `k4p1.models.build_backbone`, `--weights` of the
experiments):

* `"slim:<path>"`: a TF-slim ImageNet classification checkpoint, name-based
  (TF1), e.g. `mobilenet_v2_1.0_224.ckpt`, `mobilenet_v2_1.4_224.ckpt`,
  `inception_v3.ckpt` (the 2016 InceptionV3 file is a single-file V1
  checkpoint; both formats load).
* `"ssd_tf1:<path>"`: a TF1 Object Detection API SSD checkpoint, e.g.
  `ssd_mobilenet_v2_coco_2018_03_29/model.ckpt`; the MobileNetV2 extractor
  lives under `FeatureExtractor/MobilenetV2/`, the SSD-only extra feature maps
  and box predictors are ignored.
* `"ssd_tf2:<path>"`: a TF2 Object Detection API SSD checkpoint (object-based),
  e.g. `ssd_mobilenet_v2_320x320_coco17_tpu-8/checkpoint/ckpt-0`; its Keras
  MobileNetV2 backbone is found in the checkpoint's object graph
  (`model/_feature_extractor/classification_backbone/layer_with_weights-N`).

`<path>` is a checkpoint prefix, a V1 checkpoint file, or a directory holding
one checkpoint (for an extracted TF2 model directory, its `checkpoint/`
subdirectory is searched too).

Where each checkpoint is published, and the commands to fetch it:

    # TF-slim MobileNetV2 1.0 / 1.4 (ImageNet, 1001 classes incl. background)
    mkdir -p mobilenet_v2_1.0_224 && curl -L \\
      https://storage.googleapis.com/mobilenet_v2/checkpoints/mobilenet_v2_1.0_224.tgz \\
      | tar -xz -C mobilenet_v2_1.0_224
    #   -> weights="slim:mobilenet_v2_1.0_224/mobilenet_v2_1.0_224.ckpt"
    #   (1.4: same with 1.4 in every name, and alpha=1.4)
    # TF-slim InceptionV3
    curl -L http://download.tensorflow.org/models/inception_v3_2016_08_28.tar.gz | tar -xz
    #   -> weights="slim:inception_v3.ckpt"
    # Object Detection API, TF1 SSD MobileNetV2 (COCO)
    curl -L http://download.tensorflow.org/models/object_detection/ssd_mobilenet_v2_coco_2018_03_29.tar.gz | tar -xz
    #   -> weights="ssd_tf1:ssd_mobilenet_v2_coco_2018_03_29/model.ckpt"
    # Object Detection API, TF2 SSD MobileNetV2 320x320 (COCO 2017)
    curl -L http://download.tensorflow.org/models/object_detection/tf2/20200711/ssd_mobilenet_v2_320x320_coco17_tpu-8.tar.gz | tar -xz
    #   -> weights="ssd_tf2:ssd_mobilenet_v2_320x320_coco17_tpu-8/checkpoint"

All of these networks take inputs scaled to [-1, 1], as Keras'
`mobilenet_v2.preprocess_input` / `inception_v3.preprocess_input` produce.
The name tables and how they were derived are in `checkpoint_names`.

Every Keras weight must be filled from the checkpoint: otherwise the load
fails with `CheckpointMismatchError` listing each missing or mis-shaped
variable. Checkpoint variables that are not used (logits, SSD heads, optimizer
slots, ...) are summarised in the log and returned in the report. Slim's
training keeps exponential moving averages of trainable variables
(`<name>/ExponentialMovingAverage`); like slim's own evaluation, the loader
uses them when present (`use_ema=True`).
"""

import os
import re

from absl import logging
import numpy as np
import tensorflow as tf

from k4p1 import paths
from k4p1.models import checkpoint_names as names
from k4p1.models import ckpt_mapping

# Re-exported: which checkpoint name fills each weight (used by tests/tools).
map_model_weights = ckpt_mapping.map_model_weights

_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_MAX_LISTED = 25


class CheckpointMismatchError(ValueError):
  """The checkpoint lacks variables the model needs, or has other shapes."""


class CheckpointNotFoundError(FileNotFoundError):
  """No checkpoint exists at the given path."""


def parse_source(source: str):
  """Splits `"kind:path"` into `(kind, path)`.

  Raises:
    ValueError: no known `kind:` prefix.
  """
  kind, sep, path = str(source).partition(":")
  if not sep or kind not in names.SOURCE_ARCHITECTURES or not path:
    raise ValueError(
        f"Invalid checkpoint source {source!r}; expected 'KIND:PATH' with KIND "
        f"one of {sorted(names.SOURCE_ARCHITECTURES)}, e.g. "
        "'slim:/ckpts/mobilenet_v2_1.0_224.ckpt'.")
  return kind, path


def resolve_checkpoint_path(path: str) -> str:
  """Returns the checkpoint prefix (or V1 file) that `path` designates.

  Args:
    path: a checkpoint prefix, one of its files (`.index`, `.data-*`), a V1
      single-file checkpoint, or a directory holding exactly one checkpoint
      (a `checkpoint` state file, or a single `*.index`/`*.ckpt`); an extracted
      TF2 Object Detection model directory is searched in `checkpoint/` too.

  Raises:
    CheckpointNotFoundError: nothing there (a `FileNotFoundError`).
    ValueError: a directory holding several checkpoints.
  """
  path = os.fspath(path)
  path = path if paths.is_url(path) else os.path.expanduser(path)
  path = re.sub(r"\.(index|meta|data-\d+-of-\d+)$", "", path)
  if paths.isdir(path):
    for directory in (path, os.path.join(path, "checkpoint")):
      if not paths.isdir(directory):
        continue
      latest = tf.train.latest_checkpoint(directory)
      if latest:
        return latest
      found = sorted(p[:-len(".index")] for p in tf.io.gfile.glob(
          os.path.join(directory, "*.index")))
      found = found or sorted(
          p for p in tf.io.gfile.glob(os.path.join(directory, "*.ckpt"))
          if paths.isfile(p))
      if len(found) == 1:
        return found[0]
      if found:
        raise ValueError(f"{directory!r} holds several checkpoints "
                         f"({', '.join(found)}); pass one of these prefixes.")
  # Not `elif`: ram:// calls every prefix of a file name a directory.
  if paths.exists(path + ".index") or paths.isfile(path):
    return path
  raise CheckpointNotFoundError(
      f"No TensorFlow checkpoint at {path!r} (looked for {path}.index, a V1 "
      "checkpoint file, or a directory holding one). Download and extract it "
      "first; the public URLs are in k4p1.models.checkpoint_names."
      "PUBLISHED_CHECKPOINTS and the README.")


def _open(prefix):
  try:
    return tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, ValueError) as e:
    raise ValueError(f"{prefix!r} is not a readable TensorFlow checkpoint: "
                     f"{e}") from e


def _tf2_backbone_keys(reader, prefix):
  """{canonical key: actual checkpoint key} for the OD TF2 Keras backbone.

  Keys are resolved through the checkpoint's object graph, so they are found
  whichever alias (`layer_with_weights-N` or `layer-M`) the saver used.
  """
  # pylint: disable-next=g-import-not-at-top
  from tensorflow.core.protobuf import trackable_object_graph_pb2
  if not reader.has_tensor(_OBJECT_GRAPH_KEY):
    raise CheckpointMismatchError(
        f"{prefix!r} is a name-based (TF1) checkpoint, not an object-based TF2 "
        "one: use 'ssd_tf1:' (Object Detection TF1) or 'slim:' for it.")
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))

  def child(node_id, local_name):
    for ref in graph.nodes[node_id].children:
      if ref.local_name == local_name:
        return ref.node_id
    return None

  backbone, used_path = None, None
  for path in names.SSD_TF2_BACKBONE_PATHS:
    node_id = 0
    for part in path:
      node_id = child(node_id, part) if node_id is not None else None
    if node_id is not None:
      backbone, used_path = node_id, path
      break
  if backbone is None:
    tried = " or ".join("/".join(p) for p in names.SSD_TF2_BACKBONE_PATHS)
    raise CheckpointMismatchError(
        f"{prefix!r} has no Object Detection Keras backbone at {tried}; "
        "is it a TF2 Object Detection API SSD checkpoint?")
  canonical = "/".join(names.SSD_TF2_BACKBONE_PATHS[0])
  keys = {}
  for ref in graph.nodes[backbone].children:
    if not re.fullmatch(r"layer_with_weights-\d+", ref.local_name):
      continue
    for var_ref in graph.nodes[ref.node_id].children:
      for attribute in graph.nodes[var_ref.node_id].attributes:
        if attribute.name == "VARIABLE_VALUE":
          keys[f"{canonical}/{ref.local_name}/{var_ref.local_name}"
               f"{names.TF2_KEY_SUFFIX}"] = attribute.checkpoint_key
  logging.info("TF2 checkpoint %s: backbone at %s (%d variables).", prefix,
               "/".join(used_path), len(keys))
  return keys


def _choose_name(name, available, use_ema):
  """The EMA copy of a trainable slim variable when present, else `name`."""
  if use_ema and name.rsplit("/", 1)[-1] in names.SLIM_TRAINABLE_LEAVES:
    ema = name + names.EMA_SUFFIX
    if ema in available:
      return ema
  return name


def _describe(problems, model_name, alpha):
  lines = [f"  {ckpt_name or '(no table entry)'} for {keras_path}: expected "
           f"{expected}, found {found}"
           for ckpt_name, keras_path, expected, found in problems[:_MAX_LISTED]]
  if len(problems) > _MAX_LISTED:
    lines.append(f"  ... and {len(problems) - _MAX_LISTED} more")
  return (f"{len(problems)} weights of {model_name} (alpha={alpha}) cannot be "
          "filled from the checkpoint (missing variables show found=missing; "
          "mis-shaped ones often mean another alpha or architecture):\n"
          + "\n".join(lines))


def load_tf_checkpoint(model, source: str, architecture: str,
                       alpha: float = 1.0, use_ema: bool = True) -> dict:
  """Fills every weight of `model` in place from a slim / OD checkpoint.

  Args:
    model: a freshly built `keras.applications.MobileNetV2(alpha=alpha)` or
      `InceptionV3`, include_top=False (pooling does not matter).
    source: "slim:<path>", "ssd_tf1:<path>" or "ssd_tf2:<path>" (see module
      docstring for what `<path>` may be).
    architecture: "mobilenet_v2" or "inception_v3" (slim only).
    alpha: the width multiplier `model` was built with (named in errors; the
      shapes of the checkpoint must match the model's).
    use_ema: prefer `<name>/ExponentialMovingAverage` copies of trainable
      variables where a name-based checkpoint has them.

  Returns:
    {"source": kind, "checkpoint": resolved prefix, "loaded": number of Keras
     variables filled, "from_ema": how many came from moving averages,
     "unused": sorted checkpoint variables not used}.

  Raises:
    ValueError: bad source string, or an architecture the kind cannot fill.
    CheckpointNotFoundError: nothing at the path (a FileNotFoundError).
    CheckpointMismatchError: variables missing or mis-shaped (a ValueError),
      all listed with expected and found shapes.
  """
  kind, path = parse_source(source)
  ckpt_mapping.check_architecture(kind, architecture)
  prefix = resolve_checkpoint_path(path)
  reader = _open(prefix)
  shapes = reader.get_variable_to_shape_map()
  if kind != "ssd_tf2" and _OBJECT_GRAPH_KEY in shapes and not any(
      k.startswith(names.SLIM_SCOPE[architecture] + "/") or
      k.startswith(names.SSD_TF1_PREFIX) for k in shapes):
    raise CheckpointMismatchError(
        f"{prefix!r} is an object-based (TF2) checkpoint, not a name-based "
        f"{kind!r} one; for Object Detection TF2 checkpoints use 'ssd_tf2:'.")
  key_of = _tf2_backbone_keys(reader, prefix) if kind == "ssd_tf2" else None

  targets = ckpt_mapping.model_targets(model, kind, architecture)
  problems, assignments, used, from_ema = [], [], set(), 0
  for variable, name, layer_name in targets:
    expected = tuple(variable.shape)
    keras_path = f"{layer_name}/{variable.name}"
    if name is None:
      problems.append((None, keras_path, expected, "missing"))
      continue
    if key_of is not None:
      key = key_of.get(name)
    else:
      key = _choose_name(name, shapes, use_ema)
    if key is None or key not in shapes:
      problems.append((name, keras_path, expected, "missing"))
      continue
    found = tuple(shapes[key])
    if found != expected:
      problems.append((key, keras_path, expected, found))
      continue
    assignments.append((variable, key))
    used.add(key)
    if key != name and key_of is None:
      used.add(name)  # The raw copy is shadowed, not unused.
      from_ema += 1
  if problems:
    raise CheckpointMismatchError(
        f"Checkpoint {prefix!r} ({kind}) does not fit {architecture}: "
        + _describe(problems, model.name, alpha))
  for variable, key in assignments:
    variable.assign(reader.get_tensor(key).astype(variable.dtype))

  unused = sorted(k for k in shapes if k not in used and k != _OBJECT_GRAPH_KEY)
  logging.info("Loaded %d weights of %s from %s checkpoint %s (%d from moving "
               "averages).", len(assignments), model.name, kind, prefix,
               from_ema)
  if unused:
    logging.info("%d checkpoint variables unused (logits, SSD-only layers, "
                 "optimizer slots, ...), e.g. %s", len(unused),
                 ", ".join(unused[:10]))
  return {"source": kind, "checkpoint": prefix, "loaded": len(assignments),
          "from_ema": from_ema, "unused": unused}


def load_slim_logits(source: str, architecture: str,
                     drop_background: bool = True, use_ema: bool = True):
  """Reads slim's ImageNet logits as a Keras `Dense` kernel and bias.

  Slim's logits are a 1x1 conv (`<Scope>/Logits/Conv2d_1c_1x1`) on the pooled
  features with 1001 outputs, class 0 being "background"; Keras/TFDS ImageNet
  labels 0..999 are slim's 1..1000.

  Args:
    source: "slim:<path>".
    architecture: "mobilenet_v2" or "inception_v3".
    drop_background: drop class 0, giving 1000 classes.
    use_ema: prefer the moving-average copies when present.

  Returns:
    (kernel [features, classes], bias [classes]) float32 numpy arrays.

  Raises:
    ValueError: not a slim source, unknown architecture, or logits of an
      unexpected shape.
    CheckpointMismatchError: the checkpoint has no logits.
  """
  kind, path = parse_source(source)
  if kind != "slim":
    raise ValueError(f"Only 'slim:' checkpoints hold ImageNet logits, not "
                     f"{kind!r}; valid choices: 'slim:<path>'.")
  ckpt_mapping.check_architecture(kind, architecture)
  prefix = resolve_checkpoint_path(path)
  reader = _open(prefix)
  shapes = reader.get_variable_to_shape_map()
  scope = names.SLIM_LOGITS_SCOPE[architecture]
  arrays = []
  for leaf in ("weights", "biases"):
    key = _choose_name(f"{scope}/{leaf}", shapes, use_ema)
    if key not in shapes:
      raise CheckpointMismatchError(
          f"Checkpoint {prefix!r} has no {scope}/{leaf}: it holds no slim "
          f"{architecture} logits.")
    arrays.append(reader.get_tensor(key).astype(np.float32))
  weights, bias = arrays
  if weights.ndim != 4 or weights.shape[:2] != (1, 1):
    raise ValueError(f"{scope}/weights has shape {weights.shape}; expected a "
                     "1x1 conv [1, 1, features, classes].")
  kernel = weights[0, 0]
  if drop_background:
    if kernel.shape[1] != 1001:
      raise ValueError(
          f"{scope} has {kernel.shape[1]} classes, not 1001 (1000 + "
          "background); pass drop_background=False to keep them all.")
    kernel, bias = kernel[:, 1:], bias[1:]
  return np.ascontiguousarray(kernel), np.ascontiguousarray(bias)
