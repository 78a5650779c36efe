"""Reading TensorBoard event files in tests."""

import os

import tensorflow as tf


def event_tags(logdir) -> set:
  """Every scalar tag written to the event files directly in `logdir`."""
  tags = set()
  for name in tf.io.gfile.listdir(str(logdir)):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(str(logdir), name)):
      tags.update(value.tag for value in event.summary.value)
  return tags
