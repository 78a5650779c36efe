"""k4p1's name tables against the variable lists of the published checkpoints.

The lists in tests/data/ckpt_names/ were derived from the public slim / Object
Detection model definitions by derive_names.py (its own encoding of those
definitions, independent of k4p1.models.checkpoint_names); they were not dumped
from the real files, which cannot be downloaded here. Full-size models are
built (weights=None) so that every shape is checked too.
"""

import pathlib
import subprocess
import sys

import keras
import pytest

from k4p1.models import checkpoint_names
from k4p1.models import tf_checkpoints

NAMES_DIR = pathlib.Path(__file__).parent / "data" / "ckpt_names"

# (list file, source kind, architecture, alpha)
CHECKPOINTS = [
    ("mobilenet_v2_1.0_224.txt", "slim", "mobilenet_v2", 1.0),
    ("mobilenet_v2_1.4_224.txt", "slim", "mobilenet_v2", 1.4),
    ("inception_v3.txt", "slim", "inception_v3", 1.0),
    ("ssd_mobilenet_v2_coco_2018_03_29.txt", "ssd_tf1", "mobilenet_v2", 1.0),
    ("ssd_mobilenet_v2_320x320_coco17_tpu-8.txt", "ssd_tf2", "mobilenet_v2",
     1.0),
]

_MODELS = {}


def _model(architecture, alpha):
  """Full-width Keras backbones, built once (the input size does not change
  any weight shape, so a small one keeps this fast)."""
  key = (architecture, alpha)
  if key not in _MODELS:
    if architecture == "mobilenet_v2":
      _MODELS[key] = keras.applications.MobileNetV2(
          alpha=alpha, include_top=False, weights=None, input_shape=(96, 96, 3),
          pooling="avg")
    else:
      _MODELS[key] = keras.applications.InceptionV3(
          include_top=False, weights=None, input_shape=(75, 75, 3),
          pooling="avg")
  return _MODELS[key]


def _read_list(filename):
  entries = {}
  for line in (NAMES_DIR / filename).read_text().splitlines():
    if line.startswith("#") or not line.strip():
      continue
    name, shape = line.split(" ")
    entries[name] = tuple(int(d) for d in shape.split(","))
  return entries


@pytest.mark.parametrize("filename,kind,architecture,alpha", CHECKPOINTS)
def test_every_keras_weight_maps_to_a_real_variable_of_that_shape(
    filename, kind, architecture, alpha):
  real = _read_list(filename)
  model = _model(architecture, alpha)

  mapping = tf_checkpoints.map_model_weights(model, kind, architecture)

  assert len(mapping) == len(model.weights)
  for variable, name in mapping:
    assert name in real, f"{variable.path} -> {name!r} is not in {filename}"
    assert real[name] == tuple(variable.shape), name
  mapped = [name for _, name in mapping]
  assert len(set(mapped)) == len(mapped)  # no variable feeds two weights
  # Conversely the whole backbone is used: only the classifiers are left.
  left = set(real) - set(mapped)
  assert all("Logits/" in name for name in left), sorted(left)[:5]


def test_lists_are_what_derive_names_produces(tmp_path):
  subprocess.run([sys.executable, str(NAMES_DIR / "derive_names.py"),
                  str(tmp_path)], check=True, capture_output=True)
  for filename, *_ in CHECKPOINTS:
    assert (tmp_path / filename).read_text() == (
        NAMES_DIR / filename).read_text(), filename


def test_lists_say_they_were_derived_not_dumped():
  for filename, *_ in CHECKPOINTS:
    header = (NAMES_DIR / filename).read_text().split("\n# Format")[0]
    assert "DERIVED from the public model definitions" in header
    assert "NOT dumped" in header


def test_published_checkpoints_name_their_source_and_architecture():
  for name, info in checkpoint_names.PUBLISHED_CHECKPOINTS.items():
    kind, path = tf_checkpoints.parse_source(info["weights"])
    assert info["url"].startswith(("https://", "http://")), name
    assert info["architecture"] in checkpoint_names.SOURCE_ARCHITECTURES[kind]
    assert path
