"""Re-estimating BatchNormalization statistics from data, for random-init test models."""

import keras

from k4p1 import patches


def calibrate_batchnorm(model: keras.Model, images) -> None:
  """Sets every BN layer's moving statistics to `images`' batch statistics.

  One training-mode forward pass with momentum 0 makes each layer's moving
  mean and variance equal to the statistics of its input on `images`, so that
  inference mode then normalises like training mode on that data. Randomly
  initialised models need this: with unit statistics their activations shrink
  towards zero through depth (features ~1e-11 for a random MobileNetV2).
  Layers are made trainable only for the duration of the pass.

  Args:
    model: any Keras model; nested models are included.
    images: one batch of inputs (large enough for stable statistics).
  """
  bn_layers = [l for l in patches.leaf_layers(model)
               if isinstance(l, keras.layers.BatchNormalization)]
  saved = [(l.momentum, l.trainable) for l in bn_layers]
  try:
    for layer in bn_layers:
      layer.momentum = 0.0
      layer.trainable = True
    model(images, training=True)
  finally:
    for layer, (momentum, trainable) in zip(bn_layers, saved):
      layer.momentum = momentum
      layer.trainable = trainable
