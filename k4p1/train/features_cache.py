"""Feature caching for `logits` patches: run the frozen backbone once per image.

With patch `logits`, nothing before the head trains and every BN layer runs in
inference mode, so the pooled features of an image are the same at every
step. Computing them once (one inference pass over the training split) and
training the head on the cached vectors gives the same head as training on
the images, as long as the images are the same: caching is exact when the
training pipeline does not augment (or augments in a fixed way); with random
augmentation the cached run sees one un-augmented view per image instead.

```python
feature_model, head_model = features_cache.split_logits_model(task_model)
features, labels = features_cache.extract_features(feature_model, eval_style_ds)
train_ds = features_cache.cached_dataset(features, labels, batch_size, seed)
# Train `head_model` with `loop.make_train_step` on `train_ds`: the head layer
# is the task model's own (by identity), so the patch trains.
```
"""

from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from k4p1 import patches


def split_logits_model(task_model: keras.Model) -> Tuple[keras.Model, keras.Model]:
  """(images -> pooled features, features -> logits) of a `logits` patch.

  Both parts share the task model's layers by identity.

  Raises:
    ValueError: the task's patch trains more than its head.
  """
  info = patches.patch_info(task_model)
  if str(info.spec) != "logits":
    raise ValueError(f"Feature caching needs patch 'logits' (only the head "
                     f"trains); the task's patch is '{info.spec}'.")
  features = info.head.input
  feature_model = keras.Model(task_model.inputs, features,
                              name=f"{task_model.name}_features")
  head_input = keras.Input(features.shape[1:], dtype=features.dtype)
  head_model = keras.Model(head_input, info.head(head_input),
                           name=f"{task_model.name}_head")
  return feature_model, head_model


def make_feature_fn(feature_model: keras.Model):
  """A traced images -> features function (inference mode, fused BN)."""
  from k4p1.train import fused_batch_norm  # pylint: disable=g-import-not-at-top
  view = fused_batch_norm.fused_view(feature_model)

  @tf.function
  def features_of(images):
    return view(images, training=False)

  return features_of


def extract_features(feature_model: keras.Model,
                     dataset: tf.data.Dataset,
                     feature_fn=None) -> Tuple[np.ndarray, np.ndarray]:
  """Features and labels of one pass over `dataset` of (images, labels).

  `feature_fn`: from `make_feature_fn(feature_model)`, to reuse its trace.
  """
  features_of = feature_fn or make_feature_fn(feature_model)
  features, labels = [], []
  for images, batch_labels in dataset:
    features.append(features_of(images).numpy())
    labels.append(np.asarray(batch_labels))
  if not features:
    raise ValueError("The dataset to cache features from is empty.")
  return np.concatenate(features), np.concatenate(labels)


def cached_dataset(features: np.ndarray,
                   labels: np.ndarray,
                   global_batch_size: int,
                   seed: int = 0,
                   strategy: Optional[tf.distribute.Strategy] = None,
                   shuffle: bool = True):
  """Infinite (features, labels) batches, reshuffled every epoch.

  With a strategy, distributed with per-replica batch
  `global_batch_size // num_replicas`, like `k4p1.data.build_dataset`.
  """
  if len(features) < global_batch_size:
    raise ValueError(f"{len(features)} cached examples are fewer than one "
                     f"batch of {global_batch_size}.")

  def dataset_fn(input_context=None):
    batch = (input_context.get_per_replica_batch_size(global_batch_size)
             if input_context is not None else global_batch_size)
    ds = tf.data.Dataset.from_tensor_slices(
        (features.astype(np.float32), labels.astype(np.int32)))
    if input_context is not None and input_context.num_input_pipelines > 1:
      ds = ds.shard(input_context.num_input_pipelines,
                    input_context.input_pipeline_id)
    if shuffle:
      ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return ds.repeat().batch(batch, drop_remainder=True).prefetch(2)

  if strategy is None:
    return dataset_fn()
  return strategy.distribute_datasets_from_function(dataset_fn)
