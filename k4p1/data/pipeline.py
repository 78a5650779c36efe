"""`build_dataset`: batched, prefetched (and distributed) tf.data input pipelines.

One function serves every dataset. Examples come from TFDS (a prepared
builder, see tfds_source), from in-memory arrays (offline datasets) or from
image files (folder datasets, see folder.py); label subsets are filtered and
renumbered; then training pipelines shuffle (seeded), repeat and augment, eval
pipelines make one pass over central crops.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from k4p1.data import catalog
from k4p1.data import image_files
from k4p1.data import offline
from k4p1.data import preprocess
from k4p1.data import registry
from k4p1.data import tfds_source
from k4p1.data import validation

AUTOTUNE = tf.data.AUTOTUNE
# Upper bound of the shuffle buffer for TFDS datasets (images are decoded in it).
MAX_SHUFFLE_BUFFER = 10_000


def _check_positive_int(value, what):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{what} must be a positive integer, got {value!r}.")


def _label_table(info: registry.DatasetInfo) -> tf.Tensor:
  """Maps original labels to subset positions, -1 for labels not kept."""
  table = np.full(info.base_num_classes, -1, dtype=np.int32)
  table[list(info.label_subset)] = np.arange(len(info.label_subset), dtype=np.int32)
  return tf.constant(table)


def _tfds_examples(info, builder, split, training, seed, input_context):
  """(uint8 image [H, W, C], int32 label) pairs read from a prepared builder."""
  read_config = tfds.ReadConfig(shuffle_seed=seed, input_context=input_context)
  image_key, label_key = info.image_key, info.label_key
  # Only the image and the label are decoded (not e.g. a segmentation mask).
  ds = builder.as_dataset(
      split=split, shuffle_files=training, read_config=read_config,
      decoders=tfds.decode.PartialDecoding({image_key: True, label_key: True}))
  ds = ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)),
              num_parallel_calls=AUTOTUNE)
  if info.label_subset is not None:
    table = _label_table(info)
    # The -1 guard drops unlabelled examples (e.g. places365_small's test split).
    ds = ds.filter(lambda image, label: label >= 0)
    ds = ds.map(lambda image, label: (image, tf.gather(table, label)))
    ds = ds.filter(lambda image, label: label >= 0)
  return ds


def _offline_examples(info, split, data_dir, split_seed, input_context):
  arrays = offline.load_split(info.base_name,
                              validation.source_split(info, split),
                              info.label_subset, data_dir=data_dir,
                              split_seed=split_seed)
  images, labels = arrays.images, arrays.labels
  keep = validation.carve(info, split, labels, split_seed)
  if keep is not None:
    images, labels = images[keep], labels[keep]
  ds = tf.data.Dataset.from_tensor_slices((images, labels))
  if input_context is not None and input_context.num_input_pipelines > 1:
    ds = ds.shard(input_context.num_input_pipelines,
                  input_context.input_pipeline_id)
  return ds, len(labels)


def _ordered_examples(info, builder, split, training, shuffle, seed, data_dir,
                      split_seed, shuffle_buffer, input_context):
  """(uint8 image, int32 label) in training or eval order, before preprocessing."""
  if info.source == registry.SOURCE_FOLDER:
    # File names are permuted (whole split, every epoch) before decoding.
    ds, _ = image_files.examples(info, split, seed=seed, split_seed=split_seed,
                            repeat=training, shuffle=training or bool(shuffle),
                            input_context=input_context)
    return ds
  if builder is not None:
    ds = _tfds_examples(info, builder, split, training or bool(shuffle), seed,
                        input_context)
    buffer = shuffle_buffer or min(info.num_train_examples or MAX_SHUFFLE_BUFFER,
                                   MAX_SHUFFLE_BUFFER)
  else:
    ds, num_examples = _offline_examples(info, split, data_dir, split_seed,
                                         input_context)
    buffer = shuffle_buffer or num_examples
  if training:
    return ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
  if shuffle:
    return ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
  return ds


def build_dataset(name: "str | registry.DatasetInfo",
                  split: str,
                  global_batch_size: int,
                  image_size: int,
                  training: bool,
                  strategy: Optional[tf.distribute.Strategy] = None,
                  data_dir: Optional[os.PathLike] = None,
                  seed: int = 0,
                  *,
                  architecture: str,
                  manual_dir: Optional[os.PathLike] = None,
                  download: bool = True,
                  split_seed: int = 0,
                  shuffle_buffer: Optional[int] = None,
                  input_options: Optional[tf.distribute.InputOptions] = None,
                  shuffle: Optional[bool] = None,
                  max_batches: Optional[int] = None):
  """Builds the input pipeline of one dataset split.

  Args:
    name: a dataset name as `get_dataset_info` takes it (`"mnist5k:0-4"`,
      `"folder:DIR"`, `"tfds:beans"`), or its resolved `DatasetInfo`.
    split: split name; TFDS split syntax (`"train[:90%]"`) for TFDS datasets,
      `"train"` or `"test"` for offline and folder ones (and `"validation"`
      when the info has one, see validation.py). See `split_names(name)`.
    global_batch_size: examples per step over all replicas.
    image_size: output side in pixels.
    training: True: seeded shuffle, augmentation, repeated forever,
      `drop_remainder`. False: one pass, central crops, last batch kept.
    strategy: if given, the dataset is distributed with
      `distribute_datasets_from_function`, batch `global // num_replicas` per
      replica.
    data_dir: TFDS data directory (None: TFDS's default); for `mnist5k`, a
      directory holding another `mnist_5k.csv.gz` (otherwise the packaged file);
      for `mnistm5k`, also one holding its photos or generated `.npz`
      (otherwise the per-user cache, see mnistm.py).
    seed: seed of shuffling and augmentation.
    architecture: the backbone's name: selects `preprocess_input` (see
      preprocess.ARCHITECTURE_PREPROCESS); required, as a network's input
      preprocessing must never be guessed.
    manual_dir: TFDS manual directory for datasets downloaded by hand.
    download: whether a TFDS dataset that is not prepared may be downloaded
      and prepared (only tried when its files or hosts are reachable).
    split_seed: seed of the offline and folder datasets' train/test holdout
      (and of their validation split).
    shuffle_buffer: shuffle buffer size; default: the whole split for offline
      datasets, min(split size, 10,000) for TFDS ones. Folder datasets
      always permute the whole split's file names, before decoding.
    input_options: with a strategy, its `tf.distribute.InputOptions`, e.g.
      `experimental_fetch_to_device=True` to prefetch each replica's batches
      to its device (`k4p1.train.performance.input_options`).
    shuffle: eval pipelines only (`training=False`): shuffle the examples
      once, with `seed`, before batching (the same order on every pass).
      PreciseBN's sample of the training split needs it: its training-mode
      forward pass normalises with each batch's statistics, so batches must
      mix classes as training batches do. Default: False.
    max_batches: eval pipelines only: stop after this many batches.

  Returns:
    A `tf.data.Dataset` of (images float32 [B, S, S, 3], labels int32 [B]), or a
    `tf.distribute.DistributedDataset` of per-replica batches with a strategy.

  Raises:
    ValueError: bad arguments (unknown dataset or architecture, batch size not
      divisible by the number of replicas, ...).
    DatasetNotPreparedError: a TFDS dataset is not prepared and cannot be now.
  """
  info = (name if isinstance(name, registry.DatasetInfo)
          else catalog.get_dataset_info(name, data_dir=data_dir,
                                        manual_dir=manual_dir,
                                        download=download))
  _check_positive_int(global_batch_size, "global_batch_size")
  if training and (shuffle is not None or max_batches is not None):
    raise ValueError("shuffle and max_batches apply to eval pipelines "
                     "(training=False) only; training pipelines always "
                     "shuffle and repeat.")
  if max_batches is not None:
    _check_positive_int(max_batches, "max_batches")
  _check_positive_int(image_size, "image_size")
  preprocess.get_preprocess_fn(architecture)  # Validates the name early.
  num_replicas = strategy.num_replicas_in_sync if strategy is not None else 1
  if global_batch_size % num_replicas:
    raise ValueError(f"global_batch_size {global_batch_size} is not divisible by "
                     f"the {num_replicas} replicas of the strategy.")
  builder = None
  if info.source == registry.SOURCE_TFDS:
    # Checked here, before any strategy builds per-worker pipelines.
    builder = tfds_source.prepared_builder(info, data_dir=data_dir,
                                           manual_dir=manual_dir, download=download)
  elif validation.source_split(info, split) not in offline.SPLITS:
    # Also the folder datasets' splits.
    valid = offline.SPLITS + ((info.validation_split,) if info.validation_split
                              else ())
    raise ValueError(f"Unknown split {split!r} of {info.name!r}; valid choices: "
                     f"{valid}.")
  augmentation = info.augmentation

  def dataset_fn(input_context: Optional[tf.distribute.InputContext] = None):
    batch_size = (input_context.get_per_replica_batch_size(global_batch_size)
                  if input_context is not None else global_batch_size)
    ds = _ordered_examples(info, builder, split, training, shuffle, seed,
                           data_dir, split_seed, shuffle_buffer, input_context)
    if training:
      # One stateless seed [2] per example: reproducible under parallel map.
      example_seeds = tf.data.Dataset.random(seed=seed).batch(2)
      ds = tf.data.Dataset.zip((ds, example_seeds)).map(
          lambda example, example_seed: (
              preprocess.train_image(example[0], image_size, example_seed,
                                     architecture, augmentation),
              example[1]),
          num_parallel_calls=AUTOTUNE)
    else:
      ds = ds.map(
          lambda image, label: (
              preprocess.eval_image(image, image_size, architecture,
                                    augmentation.eval_crop_fraction),
              label),
          num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    if max_batches is not None:
      ds = ds.take(max_batches)
    return ds.prefetch(AUTOTUNE)

  if strategy is None:
    return dataset_fn()
  return strategy.distribute_datasets_from_function(dataset_fn,
                                                    options=input_options)
