"""Derives the variable names and shapes of the published checkpoints.

Run from the repository root to regenerate the lists beside this file (or
write them to another directory given as the only argument):

    python tests/data/ckpt_names/derive_names.py

The lists are DERIVED FROM THE PUBLIC MODEL DEFINITIONS, not dumped from the
checkpoint files (these machines cannot download them). This script re-encodes
those definitions on its own, without k4p1's name tables, so that tests can
check the tables against it:

* TF-slim MobileNetV2: tensorflow/models research/slim/nets/mobilenet/
  mobilenet_v2.py (V2_DEF), mobilenet.py (scopes, `depth_multiplier` with
  `_make_divisible(d * multiplier, 8, min_depth=8)`, logits
  `Logits/Conv2d_1c_1x1` with 1001 classes and biases), conv_blocks.py
  (`expanded_conv` scopes `expand` / `depthwise` / `project`; no `expand`
  when the expansion size equals the input depth; BatchNorm with gamma).
* TF-slim InceptionV3: research/slim/nets/inception_v3.py (scopes, depths,
  kernel sizes; AuxLogits and Logits with 1001 classes; BatchNorm without
  gamma per inception_utils.inception_arg_scope).
* Object Detection TF1 SSD: research/object_detection/models/
  ssd_mobilenet_v2_feature_extractor.py (slim base under
  `FeatureExtractor/MobilenetV2`, up to layer_19 = Conv_1, depth 1.0,
  min_depth 16 which does not bind at depth 1.0).
* Object Detection TF2 SSD: keras-team/keras applications/mobilenet_v2.py
  (weighted layer order and shapes) wrapped by research/object_detection/
  models/keras_models/mobilenet_v2.py; key layout
  `model/_feature_extractor/classification_backbone/layer_with_weights-N/
  <var>/.ATTRIBUTES/VARIABLE_VALUE` (see k4p1/models/checkpoint_names.py for
  how that was established, and its limits).
"""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def make_divisible(v, divisor=8, min_value=None):
  min_value = min_value or divisor
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


# (num_outputs, stride) of V2_DEF's 17 expanded_conv ops.
V2_BLOCKS = [(16, 1), (24, 2), (24, 1), (32, 2), (32, 1), (32, 1), (64, 2),
             (64, 1), (64, 1), (64, 1), (96, 1), (96, 1), (96, 1), (160, 2),
             (160, 1), (160, 1), (320, 1)]


def slim_mobilenet_v2(multiplier, scope="MobilenetV2", logits=True):
  """[(name, shape)] of slim's mobilenet_v2(depth_multiplier=multiplier)."""
  out = []

  def conv(path, k, cin, cout):
    out.append((f"{scope}/{path}/weights", [k, k, cin, cout]))
    bn(f"{path}/BatchNorm", cout)

  def bn(path, c):
    for leaf in ("beta", "gamma", "moving_mean", "moving_variance"):
      out.append((f"{scope}/{path}/{leaf}", [c]))

  depth = lambda d: make_divisible(d * multiplier, 8, 8)
  channels = depth(32)
  conv("Conv", 3, 3, channels)
  for i, (outputs, _) in enumerate(V2_BLOCKS):
    block = "expanded_conv" if i == 0 else f"expanded_conv_{i}"
    # First block: expand_input(1, divisible_by=1) -> same depth, no expand.
    inner = channels if i == 0 else make_divisible(channels * 6, 8)
    if inner > channels:
      conv(f"{block}/expand", 1, channels, inner)
    out.append((f"{scope}/{block}/depthwise/depthwise_weights",
                [3, 3, inner, 1]))
    bn(f"{block}/depthwise/BatchNorm", inner)
    channels_out = depth(outputs)
    conv(f"{block}/project", 1, inner, channels_out)
    channels = channels_out
  # The published multipliers < 1 use finegrain_classification_mode (1280).
  last = depth(1280) if multiplier >= 1.0 else 1280
  conv("Conv_1", 1, channels, last)
  if logits:
    out.append((f"{scope}/Logits/Conv2d_1c_1x1/weights", [1, 1, last, 1001]))
    out.append((f"{scope}/Logits/Conv2d_1c_1x1/biases", [1001]))
  return out


def _conv_shape(scope_name):
  kernel = scope_name.rsplit("_", 1)[-1]  # e.g. "1x7"
  return [int(k) for k in kernel.split("x")]


def slim_inception_v3():
  """[(name, shape)] of slim's inception_v3 (1001 classes)."""
  out = []

  def conv(path, cin, cout, kernel=None):
    kh, kw = kernel or _conv_shape(path)
    out.append((f"InceptionV3/{path}/weights", [kh, kw, cin, cout]))
    for leaf in ("beta", "moving_mean", "moving_variance"):
      out.append((f"InceptionV3/{path}/BatchNorm/{leaf}", [cout]))

  conv("Conv2d_1a_3x3", 3, 32)
  conv("Conv2d_2a_3x3", 32, 32)
  conv("Conv2d_2b_3x3", 32, 64)
  conv("Conv2d_3b_1x1", 64, 80)
  conv("Conv2d_4a_3x3", 80, 192)

  def chain(block, branch, cin, layers):
    for scope, cout in layers:
      # Mixed_6a's 3x3 convs are named "_1x1" in slim: take kernel from spec.
      kernel = (3, 3) if scope.startswith("Conv2d_1a") else None
      conv(f"{block}/{branch}/{scope}", cin, cout, kernel)
      cin = cout
    return cin

  def mixed_35(block, cin, pool_depth, b1_names=("Conv2d_0a_1x1",
                                                 "Conv2d_0b_5x5")):
    c = chain(block, "Branch_0", cin, [("Conv2d_0a_1x1", 64)])
    c += chain(block, "Branch_1", cin, [(b1_names[0], 48), (b1_names[1], 64)])
    c += chain(block, "Branch_2", cin, [("Conv2d_0a_1x1", 64),
                                        ("Conv2d_0b_3x3", 96),
                                        ("Conv2d_0c_3x3", 96)])
    c += chain(block, "Branch_3", cin, [("Conv2d_0b_1x1", pool_depth)])
    return c

  c = mixed_35("Mixed_5b", 192, 32)
  c = mixed_35("Mixed_5c", c, 64, ("Conv2d_0b_1x1", "Conv_1_0c_5x5"))
  c = mixed_35("Mixed_5d", c, 64)
  cin = c
  c = chain("Mixed_6a", "Branch_0", cin, [("Conv2d_1a_1x1", 384)])
  c += chain("Mixed_6a", "Branch_1", cin, [("Conv2d_0a_1x1", 64),
                                           ("Conv2d_0b_3x3", 96),
                                           ("Conv2d_1a_1x1", 96)])
  c += cin  # max pool branch
  for block, d in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                   ("Mixed_6e", 192)):
    cin = c
    c = chain(block, "Branch_0", cin, [("Conv2d_0a_1x1", 192)])
    c += chain(block, "Branch_1", cin, [("Conv2d_0a_1x1", d),
                                        ("Conv2d_0b_1x7", d),
                                        ("Conv2d_0c_7x1", 192)])
    c += chain(block, "Branch_2", cin, [("Conv2d_0a_1x1", d),
                                        ("Conv2d_0b_7x1", d),
                                        ("Conv2d_0c_1x7", d),
                                        ("Conv2d_0d_7x1", d),
                                        ("Conv2d_0e_1x7", 192)])
    c += chain(block, "Branch_3", cin, [("Conv2d_0b_1x1", 192)])
  mixed_6e = c
  cin = c
  c = chain("Mixed_7a", "Branch_0", cin, [("Conv2d_0a_1x1", 192),
                                          ("Conv2d_1a_3x3", 320)])
  c += chain("Mixed_7a", "Branch_1", cin, [("Conv2d_0a_1x1", 192),
                                           ("Conv2d_0b_1x7", 192),
                                           ("Conv2d_0c_7x1", 192),
                                           ("Conv2d_1a_3x3", 192)])
  c += cin
  for block, split in (("Mixed_7b", "Conv2d_0b_3x1"),
                       ("Mixed_7c", "Conv2d_0c_3x1")):
    cin = c
    c = chain(block, "Branch_0", cin, [("Conv2d_0a_1x1", 320)])
    b1 = chain(block, "Branch_1", cin, [("Conv2d_0a_1x1", 384)])
    c += chain(block, "Branch_1", b1, [("Conv2d_0b_1x3", 384)])
    c += chain(block, "Branch_1", b1, [(split, 384)])
    b2 = chain(block, "Branch_2", cin, [("Conv2d_0a_1x1", 448),
                                        ("Conv2d_0b_3x3", 384)])
    c += chain(block, "Branch_2", b2, [("Conv2d_0c_1x3", 384)])
    c += chain(block, "Branch_2", b2, [("Conv2d_0d_3x1", 384)])
    c += chain(block, "Branch_3", cin, [("Conv2d_0b_1x1", 192)])
  assert c == 2048, c
  conv("AuxLogits/Conv2d_1b_1x1", mixed_6e, 128)
  conv("AuxLogits/Conv2d_2a_5x5", 128, 768)
  out.append(("InceptionV3/AuxLogits/Conv2d_2b_1x1/weights", [1, 1, 768, 1001]))
  out.append(("InceptionV3/AuxLogits/Conv2d_2b_1x1/biases", [1001]))
  out.append(("InceptionV3/Logits/Conv2d_1c_1x1/weights", [1, 1, 2048, 1001]))
  out.append(("InceptionV3/Logits/Conv2d_1c_1x1/biases", [1001]))
  return out


def od_tf2_mobilenet_v2():
  """[(key, shape)] of the TF2 OD Keras MobileNetV2 (alpha 1.0) backbone."""
  layers = []  # (kind, shape) per weighted Keras layer, in construction order

  def conv(k, cin, cout, depthwise=False):
    if depthwise:
      layers.append(("depthwise_kernel", [k, k, cin, 1]))
    else:
      layers.append(("kernel", [k, k, cin, cout]))
    layers.append(("bn", [cout]))

  channels = make_divisible(32)
  conv(3, 3, channels)
  for i, (outputs, _) in enumerate(V2_BLOCKS):
    inner = channels if i == 0 else channels * 6  # Keras: expansion * in
    if i:
      conv(1, channels, inner)
    conv(3, inner, inner, depthwise=True)
    cout = make_divisible(int(outputs))
    conv(1, inner, cout)
    channels = cout
  conv(1, channels, 1280)
  out = []
  prefix = "model/_feature_extractor/classification_backbone"
  for n, (kind, shape) in enumerate(layers):
    variables = ([(v, shape) for v in ("gamma", "beta", "moving_mean",
                                       "moving_variance")]
                 if kind == "bn" else [(kind, shape)])
    for var, s in variables:
      out.append((f"{prefix}/layer_with_weights-{n}/{var}/.ATTRIBUTES/"
                  "VARIABLE_VALUE", s))
  return out


HEADER = """\
# Variable names and shapes of {what}.
# DERIVED from the public model definitions by derive_names.py (beside this
# file); NOT dumped from the downloaded checkpoint, which cannot be fetched
# here. {extra}
# Format: <variable name> <comma-separated shape>
"""

LISTS = {
    "mobilenet_v2_1.0_224.txt": (
        lambda: slim_mobilenet_v2(1.0),
        "mobilenet_v2_1.0_224.ckpt (TF-slim, storage.googleapis.com/"
        "mobilenet_v2/checkpoints/mobilenet_v2_1.0_224.tgz)",
        "Model variables only: the file is expected to also hold\n"
        "# <name>/ExponentialMovingAverage copies of trainable variables (the\n"
        "# slim MobileNet notebook restores them) and global_step."),
    "mobilenet_v2_1.4_224.txt": (
        lambda: slim_mobilenet_v2(1.4),
        "mobilenet_v2_1.4_224.ckpt (TF-slim, storage.googleapis.com/"
        "mobilenet_v2/checkpoints/mobilenet_v2_1.4_224.tgz)",
        "Model variables only (EMA copies and\n# global_step may also exist)."),
    "inception_v3.txt": (
        slim_inception_v3,
        "inception_v3.ckpt (TF-slim, download.tensorflow.org/models/"
        "inception_v3_2016_08_28.tar.gz)",
        "Model variables only (EMA copies and\n# global_step may also exist)."),
    "ssd_mobilenet_v2_coco_2018_03_29.txt": (
        lambda: slim_mobilenet_v2(1.0, "FeatureExtractor/MobilenetV2",
                                  logits=False),
        "the MobileNetV2 feature extractor of ssd_mobilenet_v2_coco_2018_03_29/"
        "model.ckpt (Object Detection API, TF1)",
        "Feature extractor only: the file also\n# holds SSD-only variables "
        "(FeatureExtractor/MobilenetV2/layer_19_*, BoxPredictor_*,\n"
        "# global_step) whose exact set depends on the model's "
        "pipeline.config."),
    "ssd_mobilenet_v2_320x320_coco17_tpu-8.txt": (
        od_tf2_mobilenet_v2,
        "the Keras MobileNetV2 backbone of ssd_mobilenet_v2_320x320_coco17_"
        "tpu-8/checkpoint/ckpt-0 (Object Detection API, TF2)",
        "Backbone only: the file also holds\n# SSD-only objects "
        "(feature_map_generator, _box_predictor, save_counter). The key\n"
        "# layout follows tf.keras 2 object-graph naming and was not checked "
        "against the real file."),
}


def main(out_dir=HERE):
  out_dir = pathlib.Path(out_dir)
  for filename, (derive, what, extra) in LISTS.items():
    lines = [HEADER.format(what=what, extra=extra)]
    lines += [f"{name} {','.join(str(d) for d in shape)}\n"
              for name, shape in derive()]
    (out_dir / filename).write_text("".join(lines))
    print(f"wrote {filename}: {len(lines) - 1} variables")


if __name__ == "__main__":
  main(*sys.argv[1:2])
