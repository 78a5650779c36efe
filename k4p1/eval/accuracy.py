"""Top-1 accuracy of a task model over a whole evaluation split."""

from typing import Callable, Optional

import keras
import tensorflow as tf

from k4p1 import tracing


def make_accuracy_fn(model: keras.Model, dataset,
                     strategy: Optional[tf.distribute.Strategy] = None
                     ) -> Callable[[], dict]:
  """Returns a function that evaluates `model` on one full pass of `dataset`.

  The pass runs inside one `tf.function` (traced once, reused for every
  evaluation of a run). The model runs with `training=False`, so every BN
  layer normalises with its moving statistics. Correct predictions and
  examples are summed over replicas, so a last partial batch (or a replica
  with an empty batch) counts exactly.

  Args:
    model: maps images to logits, e.g. a task model's fused view
      (`k4p1.train.fused_batch_norm.fused_view`, what runs evaluate: one
      fused op per BN layer, which grappler folds into the convolution
      before it).
    dataset: a finite `tf.data.Dataset` or `DistributedDataset` of (images,
      int labels) batches, e.g. `k4p1.data.build_dataset(..., training=False)`.
    strategy: the strategy `dataset` is distributed with (None: default).

  Returns:
    A zero-argument function returning {"accuracy": float, "correct": int,
    "examples": int}; its `traced_function` attribute is the `tf.function`
    of the pass (called with an iterator over `dataset`).
  """
  strategy = strategy or tf.distribute.get_strategy()

  def replica_counts(images, labels):
    def count_hits():
      logits = model(images, training=False)
      predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
      hits = tf.equal(predictions, tf.cast(labels, tf.int32))
      return tf.reduce_sum(tf.cast(hits, tf.int64))

    size = tf.size(labels, out_type=tf.int64)
    if strategy.num_replicas_in_sync == 1:
      return count_hits(), size  # Batches are never empty; a `tf.cond` costs speed.
    # A last partial batch can leave a replica with no examples; Keras' conv
    # layers fail on empty batches on CPU, so such a replica skips the model.
    hits = tf.cond(size > 0, count_hits, lambda: tf.constant(0, tf.int64))
    return hits, size

  def count_correct(iterator):
    correct = tf.constant(0, tf.int64)
    examples = tf.constant(0, tf.int64)
    for images, labels in iterator:
      hits, size = strategy.run(replica_counts, args=(images, labels))
      correct += strategy.reduce(tf.distribute.ReduceOp.SUM, hits, axis=None)
      examples += strategy.reduce(tf.distribute.ReduceOp.SUM, size, axis=None)
    return correct, examples

  count_correct = tracing.model_function(count_correct)

  def evaluate() -> dict:
    # A loop over an iterator argument, not over the captured dataset: for a
    # `tf.data.Dataset`, AutoGraph turns the latter into `Dataset.reduce`,
    # whose loop body tf.data instantiates again on every call, without
    # grappler's op fusion (~10x the forward pass's time at 32 px).
    correct, examples = (int(t.numpy()) for t in count_correct(iter(dataset)))
    return {"accuracy": correct / examples if examples else float("nan"),
            "correct": correct, "examples": examples}

  evaluate.traced_function = count_correct  # Its tracing count, its graph.
  return evaluate


def evaluate_accuracy(model: keras.Model, dataset,
                      strategy: Optional[tf.distribute.Strategy] = None) -> dict:
  """One evaluation: {"accuracy", "correct", "examples"} (see `make_accuracy_fn`)."""
  return make_accuracy_fn(model, dataset, strategy)()
