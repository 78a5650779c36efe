"""tf.data over image files: seeded per-epoch order, decoding that names bad files.

`examples` turns one split of a folder dataset (folder.py) into decoded
(uint8 RGB image [H, W, 3], int32 label) examples for `build_dataset`:
sharded per input pipeline, file names permuted (whole split, every epoch)
before any image is decoded. A file that fails to decode stops the pipeline
with an error naming it (`naming_bad_images` turns it into `BadImageError`);
with the info's `skip_bad_images`, it is dropped and named on stderr instead.
"""

from __future__ import annotations

import contextlib
import re
import sys
from typing import Callable, Optional

import tensorflow as tf

from k4p1.data import errors
from k4p1.data import folder
from k4p1.data import registry

_DECODE_ERROR = "Cannot decode image file (corrupt, or not JPEG/PNG/BMP/GIF)"
# The path `decode_images`' assertion prints: "[<_DECODE_ERROR>] [<path>]".
_FAILED_PATH = re.compile(re.escape(_DECODE_ERROR) + r"\] \[(.*)\]$",
                          re.MULTILINE)
# What a pipeline that skips bad files prints (stderr) for each one.
SKIPPED = "WARNING k4p1 (skip_bad_images): skipped image file"


def _epoch_order(count: tf.Tensor, seed: int, epoch: tf.Tensor) -> tf.Tensor:
  """Epoch `epoch`'s permutation of range(count): a pure function of the seed."""
  return tf.random.experimental.stateless_shuffle(
      tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))


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
    order = _epoch_order(count, seed, index)
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


def _path_at(paths, seed: int, shuffle: bool) -> Callable:
  """Stream index -> path, in `_ordered_files`' order (recomputed, not read)."""
  paths = tf.constant(paths, tf.string)
  count = tf.shape(paths)[0]

  def path_at(index):
    epoch_size = tf.cast(count, tf.int64)
    position = index % epoch_size
    if shuffle:
      position = tf.gather(_epoch_order(count, seed, index // epoch_size),
                           position)
    return tf.gather(paths, position)

  return path_at


def skip_bad_images(ds: tf.data.Dataset, path_at: Callable, epoch_size: int,
                    repeat: bool) -> tf.data.Dataset:
  """(path, label) -> (uint8 RGB image, label), dropping files that fail.

  Failing elements are dropped (`ignore_errors`); a scan over the kept
  elements' stream indices finds the gaps, and `path_at` names the files
  there on stderr (`SKIPPED`), in each iterator's first epoch only: a file is
  named once per evaluation pass, once per training run. A sentinel closes a
  finite stream, so a failing last file is named too. No zip with the plain
  stream (`decode_images`' check): the streams would disagree by design.

  Args:
    ds: (path, label) elements in `_ordered_files`' order.
    path_at: from `_path_at` over the same files, seed and shuffle.
    epoch_size: files per epoch.
    repeat: whether `ds` repeats (then it has no end to mark).

  Returns:
    The decoded dataset, without the files that failed.
  """
  def decode(index, example):
    return index, _decode(example[0]), example[1]

  def name_skipped(expected, element):
    index = element[0]
    for skipped in tf.range(expected, tf.minimum(index, epoch_size)):
      tf.print(SKIPPED, path_at(skipped), "(it cannot be read or decoded).",
               output_stream=sys.stderr)
    return index + 1, element

  decoded = ds.enumerate().map(decode, num_parallel_calls=tf.data.AUTOTUNE)
  decoded = decoded.ignore_errors()
  if not repeat:
    decoded = decoded.concatenate(tf.data.Dataset.from_tensors(
        (tf.constant(epoch_size, tf.int64), tf.zeros([0, 0, 3], tf.uint8),
         tf.constant(-1, tf.int32))))
  named = decoded.scan(tf.constant(0, tf.int64), name_skipped)
  if not repeat:
    named = named.filter(lambda index, image, label: index < epoch_size)
  return named.map(lambda index, image, label: (image, label))


def _check_some_file_decodes(info, split: str, paths) -> None:
  """Raises unless some file of `paths` decodes: with every file skipped, a
  repeated stream would look for a decodable one forever. Reads files in
  order until one decodes (normally the first)."""
  files = tf.data.Dataset.from_tensor_slices(list(paths))
  if not any(True for _ in files.map(_decode).ignore_errors().take(1)):
    raise ValueError(
        f"No image file of split {split!r} of {info.name!r} can be read or "
        f"decoded ({len(paths)} files, e.g. {paths[0]!r}); skip_bad_images "
        "would leave nothing to train on.")


def bad_image_path(error: BaseException) -> Optional[str]:
  """The file a `decode_images` failure names; None for any other error."""
  if not isinstance(error, tf.errors.OpError):
    return None
  match = _FAILED_PATH.search(error.message)
  return match.group(1) if match else None


@contextlib.contextmanager
def naming_bad_images():
  """Turns a folder dataset's decoding failure into `errors.BadImageError`.

  Wherever batches are pulled inside it (a training step, an evaluation, a
  PreciseBN pass), TensorFlow's error for a file that does not decode becomes
  a `BadImageError` naming the file and what to do; other errors pass as they
  are. Also a decorator (`train.run` is wrapped in it).

  Raises:
    errors.BadImageError: a file of a folder dataset failed to decode.
  """
  try:
    yield
  except tf.errors.OpError as e:
    path = bad_image_path(e)
    if path is None:
      raise
    raise errors.BadImageError(path) from None


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
  if info.skip_bad_images:
    if repeat:
      _check_some_file_decodes(info, split, paths)
    return skip_bad_images(stream, _path_at(paths, seed, shuffle), len(paths),
                           repeat), len(paths)
  return decode_images(stream), len(paths)
