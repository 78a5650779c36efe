"""`TaskInput`: how a run reads one task's data, built once by the plan.

Every pipeline of a task (training, evaluation, PreciseBN's and bn_init's
statistics sample, feature caching, int8 calibration) comes from its
`TaskInput`, which holds the dataset, the input size, the backbone's
`Architecture` (its `preprocess_input`) and the run's data settings; no caller
passes them again.

```python
task = plan.tasks[0]
train_ds = task.input.training(strategy)          # augmented, repeated
test_ds = task.input.evaluation(task.dataset.eval_split, strategy)
```
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from k4p1 import data
from k4p1 import models
from k4p1.train import performance
from k4p1.train import precise_bn


@dataclasses.dataclass(frozen=True)
class TaskInput:
  """One task's input settings; each method builds one `tf.data` pipeline.

  Attributes:
    dataset: the task's resolved dataset.
    image_size: its input size.
    architecture: the backbone's `Architecture` (selects the preprocessing).
    batch_size: the global batch size per task.
    data_dir: TFDS / offline data directory (None: the default).
    seed: seed of shuffling and augmentation.
    prefetch_to_device: training batches are copied to the device ahead.
    input_pipeline: "per_worker" or "per_replica" (`performance.input_options`).
  """
  dataset: data.DatasetInfo
  image_size: int
  architecture: models.Architecture
  batch_size: int
  data_dir: Optional[str] = None
  seed: int = 0
  prefetch_to_device: bool = True
  input_pipeline: str = "per_worker"

  def _build(self, split: str, *, training: bool, batch_size=None, **options):
    return data.build_dataset(
        self.dataset, split, global_batch_size=batch_size or self.batch_size,
        image_size=self.image_size, training=training, data_dir=self.data_dir,
        seed=self.seed, architecture=self.architecture.name, **options)

  def training(self, strategy):
    """The training split: shuffled, augmented, repeated, distributed."""
    return self._build(self.dataset.train_split, training=True,
                       strategy=strategy,
                       input_options=performance.input_options(
                           self.prefetch_to_device, self.input_pipeline,
                           strategy))

  def features_source(self):
    """The training split once, evaluation preprocessing (feature caching)."""
    return self._build(self.dataset.train_split, training=False)

  def evaluation(self, split: str, strategy):
    """`split` once, central crops, last batch kept, distributed."""
    return self._build(split, training=False, strategy=strategy)

  def statistics_sample(self, num_batches: int, strategy):
    """`num_batches` shuffled training batches, evaluation preprocessing.

    What PreciseBN and bn_init measure statistics on: batches of the training
    batch size (the composition of a batch shapes deeper training-mode BN
    layers' inputs), read as training reads them across replicas.
    """
    options = None
    if self.input_pipeline != "per_worker":
      options = performance.input_options(False, self.input_pipeline, strategy)
    return self._build(self.dataset.train_split, training=False,
                       strategy=strategy, shuffle=True, max_batches=num_batches,
                       input_options=options)

  def calibration_images(self, count: int) -> np.ndarray:
    """`count` shuffled training images (no augmentation): int8 calibration."""
    batch = 32
    dataset = self._build(self.dataset.train_split, training=False,
                          batch_size=batch, shuffle=True,
                          max_batches=-(-count // batch))
    return np.concatenate([images.numpy() for images, _ in dataset])[:count]


def samples(tasks, task_models, num_batches: int,
            strategy: Optional[tf.distribute.Strategy]) -> list:
  """(model, statistics sample) of each trained task with a training-mode BN.

  Args:
    tasks: the plan's `TaskPlan`s.
    task_models: one model per task.
    num_batches: batches per sample.
    strategy: the run's strategy.
  """
  return [(model, task.input.statistics_sample(num_batches, strategy))
          for task, model in zip(tasks, task_models)
          if task.trained and precise_bn.training_mode_bn_layers([model])]
