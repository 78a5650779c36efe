"""Image preprocessing as pure TensorFlow functions (graph-compatible, seeded).

Train: Inception-style random sized crop (area 0.08-1, aspect 3/4-4/3) and a
random left-right flip; eval: central crop (87.5%) and resize. Both then turn
grey images into RGB and apply the architecture's `preprocess_input`. Randomness
is stateless: every function that draws takes a `seed` of shape [2], so a
pipeline is reproducible whatever the order in which parallel maps run.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from k4p1 import architectures
from k4p1.data import registry


def _keras_preprocess(module) -> Callable[[tf.Tensor], tf.Tensor]:
  def preprocess_input(images):
    return module.preprocess_input(images)
  preprocess_input.__name__ = f"{module.__name__.rsplit('.', 1)[-1]}_preprocess_input"
  return preprocess_input


# keras.applications preprocess_input per architecture (the module is a fact of
# `k4p1.architectures`); each maps float 0..255 RGB images to what the network
# expects and runs inside tf.data graphs.
ARCHITECTURE_PREPROCESS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    name: _keras_preprocess(a.preprocess)
    for name, a in architectures.TABLE.items()
}


def get_preprocess_fn(architecture: str) -> Callable[[tf.Tensor], tf.Tensor]:
  """Returns the `preprocess_input` function of `architecture`.

  Raises:
    ValueError: for an architecture not in `k4p1.architectures`.
  """
  return ARCHITECTURE_PREPROCESS[architectures.get(architecture).name]


def to_rgb(image: tf.Tensor) -> tf.Tensor:
  """Returns `image` [H, W, C] with 3 channels (grey is repeated, alpha dropped)."""
  channels = image.shape[-1]
  if channels == 3:
    return image
  if channels == 1:
    return tf.image.grayscale_to_rgb(image)
  if channels is not None:
    return image[..., :3]
  image = tf.cond(tf.equal(tf.shape(image)[-1], 1),
                  lambda: tf.tile(image, [1, 1, 3]), lambda: image[..., :3])
  return tf.ensure_shape(image, [None, None, 3])


def random_sized_crop(image: tf.Tensor, seed: tf.Tensor,
                      area_range=(0.08, 1.0),
                      aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
                      max_attempts: int = 10) -> tf.Tensor:
  """Crops a random window of `image` (Inception-style "random sized crop").

  The window's area is a fraction in `area_range` of the image's and its aspect
  ratio (width / height) lies in `aspect_ratio_range`; after `max_attempts`
  failed draws the whole image is used.

  Args:
    image: [H, W, C] image of any dtype.
    seed: int32/int64 tensor of shape [2] (stateless random seed).
    area_range: (min, max) fraction of the image area.
    aspect_ratio_range: (min, max) width / height of the window.
    max_attempts: draws before falling back to the whole image.

  Returns:
    The cropped [h, w, C] image, same dtype.
  """
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image),
      bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
      seed=seed,
      # The bounding box is the whole image, so `area_range` alone bounds the
      # crop's area; a non-zero minimum coverage would raise its lower end.
      min_object_covered=0.0,
      aspect_ratio_range=aspect_ratio_range,
      area_range=area_range,
      max_attempts=max_attempts,
      use_image_if_no_bounding_boxes=True)
  return tf.slice(image, begin, size)


def central_crop(image: tf.Tensor, fraction: float = 0.875) -> tf.Tensor:
  """Keeps the central `fraction` of each side of `image` [H, W, C]."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"Central crop fraction must be in (0, 1], got {fraction}.")
  if fraction == 1.0:
    return image
  return tf.image.central_crop(image, fraction)


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
  """Bilinear resize to [image_size, image_size, C], float32 in the input's range."""
  image = tf.image.resize(image, [image_size, image_size],
                          method=tf.image.ResizeMethod.BILINEAR)
  return tf.ensure_shape(tf.cast(image, tf.float32), [image_size, image_size, None])


def train_image(image: tf.Tensor, image_size: int, seed: tf.Tensor,
                architecture: str,
                augmentation: registry.Augmentation = registry.INCEPTION_AUGMENTATION
                ) -> tf.Tensor:
  """Training preprocessing: random sized crop, flip, resize, RGB, preprocess_input.

  Args:
    image: [H, W, C] uint8 image (C = 1 or 3), values 0..255.
    image_size: output side in pixels.
    seed: [2] stateless seed; one per example.
    architecture: key of `ARCHITECTURE_PREPROCESS`.
    augmentation: crop ranges and flip switch.

  Returns:
    float32 [image_size, image_size, 3], ready for the architecture.
  """
  preprocess_input = get_preprocess_fn(architecture)
  crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, num=2))
  image = random_sized_crop(image, crop_seed, augmentation.area_range,
                            augmentation.aspect_ratio_range)
  if augmentation.flip:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  image = to_rgb(resize(image, image_size))
  return preprocess_input(image)


def eval_image(image: tf.Tensor, image_size: int, architecture: str,
               crop_fraction: float = 0.875) -> tf.Tensor:
  """Eval preprocessing: central crop, resize, RGB, preprocess_input.

  Args:
    image: [H, W, C] uint8 image (C = 1 or 3), values 0..255.
    image_size: output side in pixels.
    architecture: key of `ARCHITECTURE_PREPROCESS`.
    crop_fraction: fraction of each side kept (0.875 Inception eval).

  Returns:
    float32 [image_size, image_size, 3], ready for the architecture.
  """
  preprocess_input = get_preprocess_fn(architecture)
  image = central_crop(image, crop_fraction)
  image = to_rgb(resize(image, image_size))
  return preprocess_input(image)
