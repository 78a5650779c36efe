"""Layers that patches inject."""

import keras


@keras.saving.register_keras_serializable(package="k4p1")
class FrozenStatsBatchNormalization(keras.layers.BatchNormalization):
  """BatchNormalization that always normalises with its moving statistics.

  Used for `bn_stats="frozen"` (an ablation): the task's gammas and betas
  train, but normalisation uses the base's moving statistics, in training and
  inference alike, and those statistics never change.
  """

  def call(self, inputs, training=None, mask=None):
    # Functional BN nodes replay `mask=None`, so `mask` must be accepted.
    del training  # Statistics are frozen by design.
    return super().call(inputs, training=False, mask=mask)
