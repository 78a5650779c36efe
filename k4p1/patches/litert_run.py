"""Reading and running the LiteRT files `k4p1.patches.litert` writes.

```python
model = litert_run.LiteRTModel("tasks.tflite")
model.tasks                                   # task names, task-id order
logits = model.predict(images, task="cifar100")
```
Needs only the file and an interpreter (ai-edge-litert's, else `tf.lite`'s),
never the Keras model it came from.
"""

import json
import os
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

from k4p1 import paths

SIGNATURE = "serve"
METADATA_NAME = "k4p1"  # Name of the JSON record in the flatbuffer's metadata.


def read_metadata(path_or_bytes) -> dict:
  """The JSON record `export_task` / `export_multitask` wrote into a file.

  Raises:
    ValueError: the file has no k4p1 record (not written by this module).
  """
  blob, name = path_or_bytes, "The model"
  if not isinstance(blob, (bytes, bytearray)):
    name, blob = os.fspath(blob), paths.read_bytes(blob)
  model = schema.Model.GetRootAs(blob, 0)
  for i in range(model.MetadataLength()):
    entry = model.Metadata(i)
    if entry.Name() == METADATA_NAME.encode():
      return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
  raise ValueError(f"{name} has no {METADATA_NAME!r} metadata: it was not "
                   "written by k4p1.patches.litert.")


def interpreter_class():
  """LiteRT's `Interpreter` (ai-edge-litert) if installed, else `tf.lite`'s."""
  try:
    from ai_edge_litert import interpreter as litert_interpreter  # pylint: disable=g-import-not-at-top
    return litert_interpreter.Interpreter
  except ImportError:
    return tf.lite.Interpreter


class LiteRTModel:
  """A file of this module in an interpreter; `metadata`: its record, `tasks`."""

  def __init__(self, path: str, num_threads: int | None = None):
    blob = paths.read_bytes(path)
    self.path, self.metadata = path, read_metadata(blob)
    self.tasks = list(self.metadata["tasks"])
    with warnings.catch_warnings():  # tf.lite's, when LiteRT is not installed.
      warnings.filterwarnings("ignore", "(?s).*tf.lite.Interpreter is deprecated")
      self._interpreter = interpreter_class()(model_content=blob,
                                              num_threads=num_threads)
    self._runner = self._interpreter.get_signature_runner(SIGNATURE)

  def task_id(self, task=None) -> int:
    """The id of `task` (a name or an id; None in a one-task file)."""
    if task is None and len(self.tasks) == 1:
      return 0
    if isinstance(task, (int, np.integer)) and 0 <= task < len(self.tasks):
      return int(task)
    if task in self.tasks:
      return self.tasks.index(task)
    raise ValueError(f"Unknown task {task!r} for {self.path}; valid choices: "
                     f"{', '.join(self.tasks)} (or ids 0-{len(self.tasks) - 1}).")

  def predict(self, images, task=None, batch_size: int = 32) -> np.ndarray:
    """The task's logits [N, its classes] for preprocessed images [N, H, W, 3]."""
    task_id = self.task_id(task)
    images = np.asarray(images, np.float32)
    height, width = self.metadata["image_size"]
    if images.ndim != 4 or images.shape[1:] != (height, width, 3):
      raise ValueError(f"images have shape {images.shape}; {self.path} takes "
                       f"[N, {height}, {width}, 3].")
    classes = self.metadata["num_classes"][task_id]
    outputs = [np.zeros((0, classes), np.float32)]
    for start in range(0, len(images), batch_size):
      inputs = {"images": images[start:start + batch_size]}
      if self.metadata["task_id_input"]:
        inputs["task_id"] = np.array(task_id, np.int32)
      outputs.append(self._runner(**inputs)["logits"][:, :classes])
    return np.concatenate(outputs)


def run(path: str, images, task=None, batch_size: int = 32) -> np.ndarray:
  """`LiteRTModel(path).predict(...)`: one task's logits for preprocessed images."""
  return LiteRTModel(path).predict(images, task, batch_size)
