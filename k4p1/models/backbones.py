"""Backbones from `keras.applications`, with weights from Keras, a file, or a TF checkpoint.

A backbone is the `include_top=False` application with global average pooling:
its output is the pooled feature vector that a task head (`logits__<task>`)
reads. `weights` selects where its weights come from:

* `None`: random initialisation (tests, tiny models).
* `"imagenet"`: Keras' published ImageNet weights (downloaded, cached in
  `~/.keras/models`). Offline this fails within seconds with a message naming
  the file Keras wanted.
* a path to a `.keras`, `.h5` or `.weights.h5` file. A whole saved model may
  contain the backbone as a nested model at another input size (e.g. a
  fine-tuned classifier): weights are then copied layer by layer, by name.
* `"slim:<ckpt>"`, `"ssd_tf1:<ckpt>"`, `"ssd_tf2:<ckpt>"`: TensorFlow
  checkpoints of TF-slim and the Object Detection API
  (see `k4p1.models.tf_checkpoints`).

`check_weights` validates a `weights` value before anything is built (configs,
flags); `WEIGHTS_CHOICES` is the one text that messages about it quote.
"""

import contextlib
import os
import re
import socket

from absl import logging
import h5py
import keras

from k4p1 import architectures
from k4p1 import paths
from k4p1.core import choices

# Seconds a Keras weight download may wait on the network before we give up.
_DOWNLOAD_TIMEOUT_S = 15

# `weights` strings naming a TensorFlow checkpoint: "<prefix><path>".
CHECKPOINT_PREFIXES = choices.CHECKPOINT_PREFIXES
# The valid `weights` values, for error messages and flag help.
WEIGHTS_CHOICES = choices.WEIGHTS_CHOICES

# The architecture table lives in `k4p1.architectures`; these names are kept
# for code that imports them from here.
Architecture = architectures.Architecture
ARCHITECTURE_TABLE = architectures.TABLE
ARCHITECTURES = architectures.NAMES
DEFAULT_IMAGE_SIZE = {
    name: a.default_image_size for name, a in ARCHITECTURE_TABLE.items()
}
get_architecture = architectures.get


def normalize_weights(weights):
  """Maps the command line's "none" (or "") to None; keeps anything else."""
  if weights is None or (isinstance(weights, str) and
                         weights.strip().lower() in ("", "none")):
    return None
  return weights


def check_weights(weights):
  """Validates a `weights` argument before anything is built or trained.

  Checks what can be checked without building a model: the type, and that a
  file path exists. Checkpoint references (`CHECKPOINT_PREFIXES`) are checked
  when they are loaded.

  Args:
    weights: None, "none", "", "imagenet", a file path or a checkpoint
      reference such as "slim:/path/model.ckpt".

  Returns:
    `weights` with "none" and "" mapped to None, and a path-like as a string.

  Raises:
    ValueError: a bad type, or a path that does not exist; the message lists
      `WEIGHTS_CHOICES`.
  """
  weights = normalize_weights(weights)
  if weights is None or weights == "imagenet":
    return weights
  if isinstance(weights, os.PathLike):
    weights = os.fspath(weights)
  if not isinstance(weights, str):
    raise ValueError(f"weights={weights!r} is invalid; valid choices: "
                     f"{WEIGHTS_CHOICES}.")
  if weights.startswith(CHECKPOINT_PREFIXES):
    return weights
  if not paths.exists(weights):
    raise ValueError(f"weights={weights!r}: no such file. Valid choices: "
                     f"{WEIGHTS_CHOICES}.")
  return weights


def build_backbone(name: str,
                   image_size: int,
                   weights=None,
                   alpha: float = 1.0,
                   pooling: str = "avg",
                   **kwargs) -> keras.Model:
  """Builds a pooled feature extractor from `keras.applications`.

  Args:
    name: one of `ARCHITECTURES`.
    image_size: square input size in pixels, or None for a model that takes
      any size (one base shared by tasks or resolutions of different sizes).
    weights: `None`, `"imagenet"`, a path to a Keras file, or a TF checkpoint
      reference (`"slim:<path>"`, `"ssd_tf1:<path>"`, `"ssd_tf2:<path>"`).
    alpha: width multiplier (MobileNets only).
    pooling: `"avg"` or `"max"`; the output must be a feature vector so that
      task heads can read it.
    **kwargs: passed to the `keras.applications` constructor.

  Returns:
    A functional `keras.Model` mapping images to pooled features.

  Raises:
    ValueError: bad name, size, alpha, pooling or weights argument.
    FileNotFoundError: a weights path that does not exist.
  """
  arch = get_architecture(name)
  if image_size is not None and (not isinstance(image_size, int) or
                                 image_size < arch.min_image_size):
    raise ValueError(f"image_size={image_size!r} is invalid for {name}: use an "
                     f"integer >= {arch.min_image_size}, or None for any size.")
  if alpha != 1.0 and not arch.supports_alpha:
    raise ValueError(f"alpha={alpha} is not supported by {name}; only "
                     f"{[a for a in ARCHITECTURES if ARCHITECTURE_TABLE[a].supports_alpha]} "
                     "take a width multiplier.")
  if pooling not in ("avg", "max"):
    raise ValueError(f"pooling={pooling!r} is invalid; valid choices: 'avg', "
                     "'max' (task heads need a pooled feature vector).")
  app_kwargs = dict(input_shape=(image_size, image_size, 3), include_top=False,
                    pooling=pooling, **kwargs)
  if arch.supports_alpha:
    app_kwargs["alpha"] = alpha
  for key, value in arch.constructor_defaults:
    app_kwargs.setdefault(key, value)

  if weights is None:
    return arch.constructor(weights=None, **app_kwargs)
  if weights == "imagenet":
    return _build_with_imagenet(arch, app_kwargs)
  if not isinstance(weights, (str, os.PathLike)):
    raise ValueError(f"weights={weights!r} is invalid; valid choices: "
                     f"{WEIGHTS_CHOICES}.")
  weights = os.fspath(weights)
  model = arch.constructor(weights=None, **app_kwargs)
  if weights.startswith(CHECKPOINT_PREFIXES):
    # Imported lazily: the checkpoint tables are only needed for these sources.
    from k4p1.models import tf_checkpoints  # pylint: disable=g-import-not-at-top
    tf_checkpoints.load_tf_checkpoint(model, weights, architecture=name,
                                      alpha=alpha)
    return model
  load_weights_file(model, weights)
  return model


@contextlib.contextmanager
def _socket_timeout(seconds):
  previous = socket.getdefaulttimeout()
  socket.setdefaulttimeout(seconds)
  try:
    yield
  finally:
    socket.setdefaulttimeout(previous)


def _build_with_imagenet(arch: Architecture, app_kwargs) -> keras.Model:
  """Builds with Keras' ImageNet weights; fails fast and clearly offline."""
  try:
    # Keras looks in its cache (~/.keras/models) before the network; the
    # timeout turns a network that silently drops packets into a quick error.
    with _socket_timeout(_DOWNLOAD_TIMEOUT_S):
      return arch.constructor(weights="imagenet", **app_kwargs)
  except Exception as e:  # Keras raises a bare Exception on fetch failures.
    match = re.search(r"https?://\S+?\.h5", str(e))
    if match is None:
      raise
    url = match.group(0)
    filename = url.rsplit("/", 1)[-1]
    raise OSError(
        f"Could not load ImageNet weights for {arch.name}: Keras wanted "
        f"{filename} from {url} and the download failed ({e}). On a machine "
        f"without internet, download that file elsewhere and pass its path: "
        f"weights='/path/to/{filename}' (flag --weights=/path/to/{filename}), "
        f"or put it in ~/.keras/models/.") from e


def _is_whole_model_h5(path: str) -> bool:
  with h5py.File(path, "r") as f:
    return "model_config" in f.attrs


def load_weights_file(model: keras.Model, path: str) -> None:
  """Fills `model` from a `.keras`, `.h5` or `.weights.h5` file.

  A whole saved model is searched (recursively) for a nested model that has
  every weighted layer of `model` under the same name and with the same
  shapes; weights are copied layer by layer. This loads, e.g., the backbone of
  a fine-tuned 160 px classifier into a 96 px backbone.

  Args:
    model: the freshly built backbone to fill in place.
    path: the weights file, local or a URL (`gs://...`, `ram://...`: read
      from a local temp copy).

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the file's extension is not supported, or no model in it has
      the backbone's layers.
  """
  path = os.fspath(path)
  if not paths.exists(path):
    raise FileNotFoundError(
        f"Weights file {path!r} does not exist. Valid weights: "
        f"{WEIGHTS_CHOICES}.")
  if not path.endswith((".keras", ".h5")):
    raise ValueError(f"Unsupported weights file {path!r}; valid extensions: "
                     ".keras, .h5, .weights.h5.")
  with paths.local_copy(path) as local:
    _load_local_weights_file(model, local, path)


def _load_local_weights_file(model: keras.Model, local: str, path: str) -> None:
  """`load_weights_file` from `local`, a local copy of `path` (for messages)."""
  if path.endswith(".weights.h5"):
    model.load_weights(local)
    return
  if path.endswith(".h5") and not _is_whole_model_h5(local):
    model.load_weights(local)  # Legacy weights-only file, e.g. Keras' own.
    return
  source = keras.models.load_model(local, compile=False)
  donor = _find_donor(source, model)
  if donor is None:
    raise ValueError(
        f"No model inside {path!r} has the layers of {model.name} (searched "
        f"{[m.name for m in _nested_models(source)]}); build the backbone with "
        "the architecture and alpha the file was saved with.")
  for layer in model.layers:
    if layer.weights:
      layer.set_weights(donor.get_layer(layer.name).get_weights())
  logging.info("Loaded %d layers of %s from %s (nested model %s).",
               sum(1 for l in model.layers if l.weights), model.name, path,
               donor.name)


def _nested_models(model):
  yield model
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from _nested_models(layer)


def _find_donor(source: keras.Model, target: keras.Model):
  """Returns the model in `source` whose layers match `target`'s, or None."""
  wanted = {l.name: [tuple(w.shape) for w in l.weights]
            for l in target.layers if l.weights}
  for candidate in _nested_models(source):
    have = {l.name: [tuple(w.shape) for w in l.weights]
            for l in candidate.layers if l.weights}
    if all(have.get(name) == shapes for name, shapes in wanted.items()):
      return candidate
  return None
