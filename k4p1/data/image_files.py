"""tf.data over image files: seeded per-epoch order, decoding that names bad files.

`examples` turns one split of a folder dataset (folder.py) into decoded
(uint8 RGB image [H, W, 3], int32 label) examples for `build_dataset`:
sharded per input pipeline, file names permuted (whole split, every epoch)
before any image is decoded, and a file that fails to decode stops the
pipeline with an error naming it.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from k4p1.data import folder
from k4p1.data import registry

_DECODE_ERROR = "Cannot decode image file (corrupt, or not JPEG/PNG/BMP/GIF)"


def _ordered_files(paths, labels, seed: int, repeat: bool,
                   shuffle: bool) -> tf.data.Dataset:
  """(path, label) in file order, or reshuffled every epoch by a stateless seed.

  Epoch e's order is a permutation seeded with (seed, e), a pure function of
  the seed: two iterators of this dataset see the same order, which
  `decode_images` relies on (`Dataset.shuffle` with reshuffling draws a new
  order per iterator). Paths are cheap, so the whole split is permuted.
  """
  if not shuffle:
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    return ds.repeat() if repeat else ds
  paths, labels = tf.constant(paths), tf.constant(labels)
  count = tf.shape(labels)[0]

  def epoch(index):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), index]))
    return tf.data.Dataset.from_tensor_slices(
        (tf.gather(paths, order), tf.gather(labels, order)))

  epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
  return epochs.flat_map(epoch)


def _decode(path: tf.Tensor) -> tf.Tensor:
  image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                             expand_animations=False)
  return tf.ensure_shape(image, [None, None, 3])


def decode_images(ds: tf.data.Dataset) -> tf.data.Dataset:
  """(path, label) -> (uint8 RGB image [H, W, 3], label); failures name the file.

  tf.data cannot catch a decoding error, and TensorFlow's own message does
  not say which file failed. So the stream is read twice (it is cheap: paths
  in a seeded order): once decoded with failing elements dropped
  (`ignore_errors`) and once as is; zipped, the first position where they
  disagree is the file that failed, and an assertion names it. Both ends get
  a sentinel, so a failing last file is caught too.

  Args:
    ds: (path string, label) elements whose order is the same on every
      iteration (`_ordered_files`).

  Returns:
    The decoded dataset; iterating it raises `InvalidArgumentError` with
    "Cannot decode image file ... [<path>]" at a corrupt file.
  """
  def decode(index, example):
    return index, example[0], _decode(example[0]), example[1]

  def check(plain, decoded):
    (index, (path, _)), (decoded_index, decoded_path, image, label) = (
        plain, decoded)
    same = tf.logical_and(tf.equal(index, decoded_index),
                          tf.equal(path, decoded_path))
    with tf.control_dependencies([tf.debugging.Assert(
        same, [_DECODE_ERROR, path])]):
      return decoded_index, tf.identity(image), label

  def not_sentinel(index, image, label):
    del image, label
    return index >= 0

  def drop_index(index, image, label):
    del index
    return image, label

  end, no_label = tf.constant(-1, tf.int64), tf.constant(-1, tf.int32)
  plain = ds.enumerate().concatenate(tf.data.Dataset.from_tensors(
      (end, (tf.constant(""), no_label))))
  decoded = ds.enumerate().map(decode, num_parallel_calls=tf.data.AUTOTUNE)
  decoded = decoded.ignore_errors().concatenate(tf.data.Dataset.from_tensors(
      (end, tf.constant(""), tf.zeros([0, 0, 3], tf.uint8), no_label)))
  checked = tf.data.Dataset.zip((plain, decoded)).map(
      check, num_parallel_calls=tf.data.AUTOTUNE)
  return checked.filter(not_sentinel).map(drop_index)


def examples(info: registry.DatasetInfo, split: str, *, seed: int,
             split_seed: int, repeat: bool, shuffle: bool,
             input_context: Optional[tf.distribute.InputContext] = None
             ) -> tuple[tf.data.Dataset, int]:
  """Decoded (uint8 RGB image, int32 label) examples of one folder split.

  Args:
    info: the folder dataset (`folder.folder_info`).
    split: "train" or "test".
    seed: seed of the per-epoch order.
    split_seed: seed of the holdout.
    repeat: repeat forever (training).
    shuffle: a new seeded order every epoch; else file order.
    input_context: with several input pipelines, this pipeline reads every
      `num_input_pipelines`-th file from `input_pipeline_id` on.

  Returns:
    (dataset, number of files this pipeline reads per epoch).

  Raises:
    ValueError: a repeated pipeline would get no file (more input pipelines
      than files).
  """
  paths, labels = folder.split_files(info, split, split_seed)
  if input_context is not None and input_context.num_input_pipelines > 1:
    paths = paths[input_context.input_pipeline_id::
                  input_context.num_input_pipelines]
    labels = labels[input_context.input_pipeline_id::
                    input_context.num_input_pipelines]
  if repeat and not len(paths):
    raise ValueError(f"Split {split!r} of {info.name!r} gives no file to an "
                     "input pipeline: it has fewer images than input "
                     "pipelines.")
  stream = _ordered_files(paths, labels, seed, repeat, shuffle)
  return decode_images(stream), len(paths)
