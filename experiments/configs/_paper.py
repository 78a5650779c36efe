"""The paper's experimental grid (../shared/PAPER.md), shared by the paper_* configs."""

from k4p1.core import defaults

# Transfer datasets in the paper's order; Places365 is trained at 256 px.
TRANSFER_DATASETS = ("cifar10", "cifar100", "cars196", "fgvc_aircraft",
                     "oxford_flowers102", "places365_small")
# The paper's patch kinds, in table order; `full` is fine-tuning everything.
MOBILENET_PATCHES = ("logits", "scale_bias+logits", "depthwise+logits",
                     "scale_bias+depthwise+logits", "full")
# InceptionV3 has no depthwise convolutions: its depthwise rows are n/a.
INCEPTION_PATCHES = ("logits", "scale_bias+logits", "full")
IMAGE_SIZE = {"mobilenet_v2": 224, "inception_v3": 299}
PLACES_IMAGE_SIZE = 256
PAPER_LEARNING_RATE = defaults.PAPER_LEARNING_RATE
# Appendix B.2: the sweep's grid is not published; ours is half-decades
# around the paper's 0.045 (0.045 * 10**(k/2), rounded, k = -2..2).
LR_SWEEP = (0.0045, 0.0142, 0.045, 0.142, 0.45)
LR_SWEEP_PATCHES = ("logits", "scale_bias+logits", "full")


def image_size(model: str, dataset: str) -> int:
  """The paper's input size: 224 MobileNetV2, 299 InceptionV3, 256 Places365."""
  if dataset.split(":")[0] == "places365_small":
    return PLACES_IMAGE_SIZE
  return IMAGE_SIZE[model]


def transfer_rows(model: str, datasets, patch_specs, learning_rates=(PAPER_LEARNING_RATE,),
                  **extra) -> list:
  """One transfer row per (dataset, patch, learning rate), datasets outermost."""
  return [{"model": model, "dataset": dataset,
           "image_size": image_size(model, dataset), "patch": spec,
           "learning_rate": lr, **extra}
          for dataset in datasets for spec in patch_specs for lr in learning_rates]
