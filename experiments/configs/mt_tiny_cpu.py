"""A minute-scale multi-task CPU run on the offline digits (smoke tests, laptops).

MobileNetV2 0.35 at 32 px from random weights, two label subsets of
`mnist5k` as two tasks. For numbers that say how well patches share a base,
start from a pretrained backbone (`--weights=<pretrain>/backbone.weights.h5`,
see BUILD_NOTES.md).
"""


def get_config() -> dict:
  return {
      "model": "mobilenet_v2",
      "weights": None,
      "alpha": 0.35,
      "image_size": 32,
      "tasks": ("mnist5k:5-6", "mnist5k:7-9"),
      "batch_size": 32,
      "train_steps": 100,
      "eval_every": 50,
      "checkpoint_every": 50,
      "summary_every": 10,
  }
