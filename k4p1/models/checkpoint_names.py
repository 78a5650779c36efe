"""Name tables: TF-slim / Object Detection checkpoint names <-> Keras layers.

Every table here was derived by reading the public model definitions in
tensorflow/models and keras-team/keras; none was dumped from a downloaded
checkpoint (these machines are offline). Sources:

* TF-slim MobileNetV2 (`research/slim/nets/mobilenet/`): `mobilenet_v2.py`
  (`V2_DEF`: a `slim.conv2d`, 17 `expanded_conv` blocks, a 1x1 `slim.conv2d`),
  `mobilenet.py` (scope `MobilenetV2`; unnamed convs get slim's default scopes
  `Conv`, `Conv_1`; logits `Logits/Conv2d_1c_1x1` with biases),
  `conv_blocks.py` (`expanded_conv`, `expanded_conv_1`, ...; sub-scopes
  `expand`, `depthwise` (a `separable_conv2d` with `num_outputs=None`, variable
  `depthwise_weights` [h, w, in, 1]) and `project`; the expand conv is skipped
  when the expansion size equals the input depth, i.e. in the first block).
  BatchNorm has `center` and `scale` (gamma and beta), epsilon 1e-3.
* TF-slim InceptionV3 (`research/slim/nets/inception_v3.py`): explicit scopes
  (`Conv2d_1a_3x3`, `Mixed_5b/Branch_1/Conv2d_0b_5x5`, ... including the
  historical `Mixed_5c/Branch_1/Conv_1_0c_5x5`); BatchNorm without gamma
  (`inception_arg_scope`: scale=False), epsilon 1e-3; convs have no biases.
* Object Detection API, TF1 (`research/object_detection/models/
  ssd_mobilenet_v2_feature_extractor.py`): the slim MobileNetV2 base built
  under `variable_scope('MobilenetV2')` inside the meta-architecture's
  `FeatureExtractor` scope, up to `layer_19` (= `Conv_1`); the extra SSD
  feature maps (`FeatureExtractor/MobilenetV2/layer_19_*`) and the
  `BoxPredictor_*` variables are SSD-only and ignored here.
* Object Detection API, TF2 (`ssd_mobilenet_v2_keras_feature_extractor.py`,
  `models/keras_models/mobilenet_v2.py`, `meta_architectures/ssd_meta_arch.py`,
  `exporter_lib_v2.py`): the detector is saved as
  `tf.train.Checkpoint(model=detection_model)`; the SSD meta-architecture
  holds the extractor as `_feature_extractor`, which holds the backbone as
  `classification_backbone` (`restore_from_objects` relies on both names; older
  code called it `mobilenet_v2`). The backbone is the Keras
  `MobileNetV2(include_top=False)` application built through `_LayersOverride`
  (same weighted layers, same order). tf.keras 2 functional models name their
  weighted layers `layer_with_weights-N` in the checkpoint object graph; the
  variables of Keras 2 layers are `kernel`, `depthwise_kernel`, `gamma`,
  `beta`, `moving_mean`, `moving_variance`. So a backbone variable's key is e.g.
  `model/_feature_extractor/classification_backbone/layer_with_weights-2/
  depthwise_kernel/.ATTRIBUTES/VARIABLE_VALUE`. That key layout is consistent
  with third-party converters that read the published TF2 SSD-MobileNetV2
  checkpoints, but it was not checked against the real file here; the loader
  therefore resolves keys through the checkpoint's own object graph (by the
  `layer_with_weights-N` child names) rather than trusting a fixed string.
* Keras (`keras/src/applications/mobilenet_v2.py`, `inception_v3.py`):
  MobileNetV2 layer names are stable (`Conv1`, `bn_Conv1`,
  `expanded_conv_depthwise`, `block_N_expand_BN`, `Conv_1_bn`, ...).
  InceptionV3 names its 94 conv/BN pairs automatically (`conv2d_17`,
  `batch_normalization_17`, numbered per process), so they are matched by
  construction order, which follows slim's branch order exactly.

Kernel layouts agree: slim conv `weights` and Keras `Conv2D` kernels are
[h, w, in, out]; slim `depthwise_weights` and Keras `DepthwiseConv2D` kernels
are [h, w, in, multiplier].
"""

from k4p1 import architectures

# Source kinds accepted by `tf_checkpoints.load_tf_checkpoint`, and the
# architectures each one can fill (`Architecture.checkpoint_sources`).
SOURCE_ARCHITECTURES = {
    source: tuple(a.name for a in architectures.TABLE.values()
                  if source in a.checkpoint_sources)
    for source in architectures.CHECKPOINT_SOURCES
}

# Top-level variable scope of each slim network (`Architecture.slim_scope`).
SLIM_SCOPE = {a.name: a.slim_scope for a in architectures.TABLE.values()
              if a.slim_scope}

# The TF1 Object Detection meta-architectures put the extractor under this.
SSD_TF1_PREFIX = "FeatureExtractor/"

# Slim's 1001-way logits (class 0 = background), a 1x1 conv with biases.
SLIM_LOGITS_SCOPE = {name: f"{scope}/Logits/Conv2d_1c_1x1"
                     for name, scope in SLIM_SCOPE.items()}

# Suffix of the exponential-moving-average copy slim's training script keeps
# of every trainable variable (tf.train.ExponentialMovingAverage naming).
EMA_SUFFIX = "/ExponentialMovingAverage"

# Slim leaf names whose moving average is preferred when present: the slim
# MobileNet notebook restores with
# `tf.train.ExponentialMovingAverage(0.999).variables_to_restore()`, which
# averages trainable variables only (not BN moving statistics).
SLIM_TRAINABLE_LEAVES = ("weights", "depthwise_weights", "biases", "gamma",
                         "beta")

# ---------------------------------------------------------------------------
# MobileNetV2
# ---------------------------------------------------------------------------
_MOBILENET_V2_NUM_BLOCKS = 17  # expanded_conv .. expanded_conv_16


def _mobilenet_v2_tables():
  """Returns (weighted Keras layers in order, {Keras layer: slim scope})."""
  order = ["Conv1", "bn_Conv1"]
  scopes = {"Conv1": "Conv", "bn_Conv1": "Conv/BatchNorm"}
  for block in range(_MOBILENET_V2_NUM_BLOCKS):
    keras_prefix = "expanded_conv_" if block == 0 else f"block_{block}_"
    slim_block = "expanded_conv" if block == 0 else f"expanded_conv_{block}"
    parts = ("depthwise", "project") if block == 0 else (
        "expand", "depthwise", "project")
    for part in parts:
      order += [keras_prefix + part, keras_prefix + part + "_BN"]
      scopes[keras_prefix + part] = f"{slim_block}/{part}"
      scopes[keras_prefix + part + "_BN"] = f"{slim_block}/{part}/BatchNorm"
  order += ["Conv_1", "Conv_1_bn"]
  scopes.update({"Conv_1": "Conv_1", "Conv_1_bn": "Conv_1/BatchNorm"})
  return tuple(order), scopes


# The 104 weighted layers of keras.applications.MobileNetV2(include_top=False)
# in construction order; entry N is `layer_with_weights-N` in the TF2 Object
# Detection checkpoint.
MOBILENET_V2_KERAS_WEIGHTED_LAYERS, MOBILENET_V2_SLIM_SCOPES = (
    _mobilenet_v2_tables())

# ---------------------------------------------------------------------------
# InceptionV3: slim scopes of the 94 conv+BN units, in construction order
# (= the order keras.applications.InceptionV3 calls `conv2d_bn`).
# ---------------------------------------------------------------------------
_INCEPTION_35 = ("Branch_0/Conv2d_0a_1x1", "Branch_1/Conv2d_0a_1x1",
                 "Branch_1/Conv2d_0b_5x5", "Branch_2/Conv2d_0a_1x1",
                 "Branch_2/Conv2d_0b_3x3", "Branch_2/Conv2d_0c_3x3",
                 "Branch_3/Conv2d_0b_1x1")
_INCEPTION_17 = ("Branch_0/Conv2d_0a_1x1", "Branch_1/Conv2d_0a_1x1",
                 "Branch_1/Conv2d_0b_1x7", "Branch_1/Conv2d_0c_7x1",
                 "Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_7x1",
                 "Branch_2/Conv2d_0c_1x7", "Branch_2/Conv2d_0d_7x1",
                 "Branch_2/Conv2d_0e_1x7", "Branch_3/Conv2d_0b_1x1")


def _inception_8(branch_1_second_split):
  return ("Branch_0/Conv2d_0a_1x1", "Branch_1/Conv2d_0a_1x1",
          "Branch_1/Conv2d_0b_1x3", "Branch_1/" + branch_1_second_split,
          "Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_3x3",
          "Branch_2/Conv2d_0c_1x3", "Branch_2/Conv2d_0d_3x1",
          "Branch_3/Conv2d_0b_1x1")


def _prefixed(block, scopes):
  return tuple(f"{block}/{s}" for s in scopes)


INCEPTION_V3_CONV_SCOPES = (
    ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
     "Conv2d_4a_3x3")
    + _prefixed("Mixed_5b", _INCEPTION_35)
    # Mixed_5c's second branch keeps names from an older slim version.
    + _prefixed("Mixed_5c", ("Branch_0/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x1",
                             "Branch_1/Conv_1_0c_5x5") + _INCEPTION_35[3:])
    + _prefixed("Mixed_5d", _INCEPTION_35)
    + _prefixed("Mixed_6a", ("Branch_0/Conv2d_1a_1x1",
                             "Branch_1/Conv2d_0a_1x1",
                             "Branch_1/Conv2d_0b_3x3",
                             "Branch_1/Conv2d_1a_1x1"))
    + _prefixed("Mixed_6b", _INCEPTION_17)
    + _prefixed("Mixed_6c", _INCEPTION_17)
    + _prefixed("Mixed_6d", _INCEPTION_17)
    + _prefixed("Mixed_6e", _INCEPTION_17)
    + _prefixed("Mixed_7a", ("Branch_0/Conv2d_0a_1x1",
                             "Branch_0/Conv2d_1a_3x3",
                             "Branch_1/Conv2d_0a_1x1",
                             "Branch_1/Conv2d_0b_1x7",
                             "Branch_1/Conv2d_0c_7x1",
                             "Branch_1/Conv2d_1a_3x3"))
    # Mixed_7b names its 3x1 split `0b`, Mixed_7c names it `0c`.
    + _prefixed("Mixed_7b", _inception_8("Conv2d_0b_3x1"))
    + _prefixed("Mixed_7c", _inception_8("Conv2d_0c_3x1"))
)
assert len(INCEPTION_V3_CONV_SCOPES) == 94, len(INCEPTION_V3_CONV_SCOPES)

# ---------------------------------------------------------------------------
# Object Detection API, TF2 (object-based checkpoints)
# ---------------------------------------------------------------------------
# Object-graph paths (child names from the root) under which OD TF2 detectors
# keep the Keras backbone, most likely first. The first is what
# `ssd_meta_arch.restore_from_objects` uses; the second is older OD code.
SSD_TF2_BACKBONE_PATHS = (
    ("model", "_feature_extractor", "classification_backbone"),
    ("model", "_feature_extractor", "mobilenet_v2"),
)
SSD_TF2_LAYER_CHILD = "layer_with_weights-{}"
# How tf.keras 2 names each Keras layer variable in the object graph.
TF2_VARIABLE_NAMES = {
    "conv": {"kernel": "kernel"},
    "depthwise": {"kernel": "depthwise_kernel"},
    "bn": {v: v for v in ("gamma", "beta", "moving_mean", "moving_variance")},
}
TF2_KEY_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

# ---------------------------------------------------------------------------
# Where the checkpoints are published (verified in public code that downloads
# them; see README / docs for the commands).
# ---------------------------------------------------------------------------
PUBLISHED_CHECKPOINTS = {
    "mobilenet_v2_1.0_224": dict(
        url="https://storage.googleapis.com/mobilenet_v2/checkpoints/"
        "mobilenet_v2_1.0_224.tgz",
        weights="slim:mobilenet_v2_1.0_224/mobilenet_v2_1.0_224.ckpt",
        architecture="mobilenet_v2", alpha=1.0),
    "mobilenet_v2_1.4_224": dict(
        url="https://storage.googleapis.com/mobilenet_v2/checkpoints/"
        "mobilenet_v2_1.4_224.tgz",
        weights="slim:mobilenet_v2_1.4_224/mobilenet_v2_1.4_224.ckpt",
        architecture="mobilenet_v2", alpha=1.4),
    "inception_v3": dict(
        url="http://download.tensorflow.org/models/"
        "inception_v3_2016_08_28.tar.gz",
        weights="slim:inception_v3.ckpt",
        architecture="inception_v3", alpha=1.0),
    "ssd_mobilenet_v2_coco_2018_03_29": dict(
        url="http://download.tensorflow.org/models/object_detection/"
        "ssd_mobilenet_v2_coco_2018_03_29.tar.gz",
        weights="ssd_tf1:ssd_mobilenet_v2_coco_2018_03_29/model.ckpt",
        architecture="mobilenet_v2", alpha=1.0),
    "ssd_mobilenet_v2_320x320_coco17_tpu-8": dict(
        url="http://download.tensorflow.org/models/object_detection/tf2/"
        "20200711/ssd_mobilenet_v2_320x320_coco17_tpu-8.tar.gz",
        weights="ssd_tf2:ssd_mobilenet_v2_320x320_coco17_tpu-8/checkpoint",
        architecture="mobilenet_v2", alpha=1.0),
}
