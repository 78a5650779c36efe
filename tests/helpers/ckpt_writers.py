"""Writes Keras backbone weights as TF-slim / Object Detection checkpoints.

The inverse of `tf_checkpoints.load_tf_checkpoint`: it produces checkpoints
with the real variable names and layouts of the published files, so that the
loader can be tested offline (and Keras weights can be handed to TF1 tools):

* `write_tf1_checkpoint`: a name-based checkpoint written by a
  `tf.compat.v1.train.Saver` in graph mode, V2 (`.index` + `.data`) or the
  legacy single-file V1 format of the 2016 InceptionV3 release.
* `write_od_tf2_checkpoint`: an object-based checkpoint whose object graph has
  the Object Detection API's structure: `model/_feature_extractor/
  classification_backbone/{layer_with_weights-N, layer-M}/<variable>`, the
  Keras 2 names of each variable (`kernel`, `depthwise_kernel`, `gamma`, ...),
  plus a few SSD-only objects (feature map generator, box predictor) and the
  `save_counter`, as `exporter_main_v2.py` writes it (`ckpt-0`).

Files are written into a temporary directory beside the target and moved into
place, the `.index` (what readers look for) last; other checkpoints in the same
directory stay (so not `atomic.output_dir`, which replaces the directory).
"""

import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from k4p1 import atomic
from k4p1.models import checkpoint_names as names
from k4p1.models import ckpt_mapping


def _move_into_place(tmp_dir, out_dir):
  files = sorted(os.listdir(tmp_dir), key=lambda f: f.endswith(".index"))
  for filename in files:
    os.replace(os.path.join(tmp_dir, filename), os.path.join(out_dir, filename))
  shutil.rmtree(tmp_dir, ignore_errors=True)


def checkpoint_values(model, kind, architecture):
  """{checkpoint name: numpy value} of every weight of `model`.

  Raises:
    ValueError: a weight of `model` has no checkpoint name.
  """
  values = {}
  for variable, name in ckpt_mapping.map_model_weights(model, kind,
                                                       architecture):
    if name is None:
      raise ValueError(f"{model.name} weight {variable.path} has no name in a "
                       f"{kind!r} {architecture} checkpoint.")
    values[name] = np.array(variable.numpy())
  return values


def write_tf1_checkpoint(values, prefix, write_version="V2"):
  """Writes `{name: array}` as a name-based TF1 checkpoint at `prefix`.

  Args:
    values: variable names (slash-separated scopes) to numpy arrays.
    prefix: checkpoint prefix, e.g. `/tmp/x/mobilenet_v2_1.0_224.ckpt`.
    write_version: "V2" (.index + .data files) or "V1" (one file).

  Returns:
    `prefix`.
  """
  out_dir = os.path.dirname(os.path.abspath(prefix))
  os.makedirs(out_dir, exist_ok=True)
  tmp_dir = tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=out_dir)
  version = getattr(tf.compat.v1.train.SaverDef, write_version)
  with tf.Graph().as_default():
    var_list, feeds, assigns = {}, {}, []
    for i, (name, value) in enumerate(sorted(values.items())):
      value = np.asarray(value)
      # Fed through placeholders, so large weights stay out of the GraphDef.
      variable = tf.compat.v1.Variable(
          tf.zeros(value.shape, value.dtype), name=f"v{i}")
      placeholder = tf.compat.v1.placeholder(value.dtype, value.shape)
      assigns.append(variable.assign(placeholder))
      feeds[placeholder] = value
      var_list[name] = variable
    saver = tf.compat.v1.train.Saver(var_list=var_list, write_version=version)
    with tf.compat.v1.Session() as session:
      session.run(assigns, feed_dict=feeds)
      saver.save(session, os.path.join(tmp_dir, os.path.basename(prefix)),
                 write_meta_graph=False, write_state=False)
  _move_into_place(tmp_dir, out_dir)
  return prefix


def write_slim_checkpoint(model, prefix, kind="slim",
                          architecture="mobilenet_v2", extra=None,
                          write_version="V2"):
  """Writes `model`'s weights with slim (or OD TF1) names, plus `extra`."""
  values = checkpoint_values(model, kind, architecture)
  values.update(extra or {})
  return write_tf1_checkpoint(values, prefix, write_version)


class _Node(tf.Module):
  """A trackable whose children keep the order they were attached in."""

  def __init__(self, children=()):
    super().__init__()
    for child_name, child in children:
      setattr(self, child_name, child)


def _keras2_variables(layer):
  """(tf.keras 2 attribute name, variable), in tf.keras 2's creation order."""
  by_name = {w.name: w for w in layer.weights}
  kind = ckpt_mapping.layer_kind(layer)
  if kind == "bn":
    return [(n, by_name[n]) for n in ("gamma", "beta", "moving_mean",
                                      "moving_variance") if n in by_name]
  renamed = names.TF2_VARIABLE_NAMES[kind]
  return [(renamed.get(n, n), w) for n, w in by_name.items()]


def write_od_tf2_checkpoint(model, directory, backbone_attribute=
                            "classification_backbone", aliases_first=False):
  """Writes a MobileNetV2 as an OD API TF2 SSD checkpoint `directory/ckpt-0`.

  Args:
    model: a `keras.applications.MobileNetV2(include_top=False)`.
    directory: output directory (a `checkpoint` state file is written too).
    backbone_attribute: the extractor's attribute holding the backbone
      (`classification_backbone`; older OD code used `mobilenet_v2`).
    aliases_first: attach each layer as `layer-M` before `layer_with_weights-N`
      so that the saver keys variables by the `layer-M` alias (a layout the
      loader must also handle).

  Returns:
    The checkpoint prefix `directory/ckpt-0`.
  """
  backbone_children = []
  layer_index = weighted_index = 0
  for layer in model.layers:
    # OD's _LayersOverride turns ZeroPadding2D into a plain function, so the
    # OD backbone has no such layers (and counts `layer-M` without them).
    if isinstance(layer, keras.layers.ZeroPadding2D):
      continue
    if layer.weights:
      node = _Node([(n, tf.Variable(w.numpy(), name=n))
                    for n, w in _keras2_variables(layer)])
      pair = [(names.SSD_TF2_LAYER_CHILD.format(weighted_index), node),
              (f"layer-{layer_index}", node)]
      backbone_children += pair[::-1] if aliases_first else pair
      weighted_index += 1
    else:
      backbone_children.append((f"layer-{layer_index}", _Node()))
    layer_index += 1
  zeros = lambda *shape: tf.Variable(tf.zeros(shape))
  feature_maps = _Node([("layer_19_2_Conv2d_2_3x3_s2_512",
                         _Node([("kernel", zeros(3, 3, 256, 512))]))])
  extractor = _Node([(backbone_attribute, _Node(backbone_children)),
                     ("feature_map_generator", feature_maps)])
  box_predictor = _Node([("_box_prediction_head",
                          _Node([("kernel", zeros(3, 3, 8, 24))]))])
  detection_model = _Node([("_feature_extractor", extractor),
                           ("_box_predictor", box_predictor)])
  os.makedirs(directory, exist_ok=True)
  tmp_dir = tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=directory)
  checkpoint = tf.train.Checkpoint(model=detection_model)
  manager = tf.train.CheckpointManager(checkpoint, tmp_dir, max_to_keep=1,
                                       checkpoint_name="ckpt")
  manager.save(checkpoint_number=0)
  os.remove(os.path.join(tmp_dir, "checkpoint"))
  _move_into_place(tmp_dir, directory)
  atomic.write_text_atomic(os.path.join(directory, "checkpoint"),
                           'model_checkpoint_path: "ckpt-0"\n'
                           'all_model_checkpoint_paths: "ckpt-0"\n')
  return os.path.join(directory, "ckpt-0")
