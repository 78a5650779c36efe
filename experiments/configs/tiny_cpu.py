"""A minute-scale CPU run on the offline digits: for smoke tests and laptops.

MobileNetV2 0.35 at 32 px from random weights on `mnist5k:5-9`; the numbers
it gives say the pipeline works, not how well patches transfer (for that, see
`experiments/demo.py`, which pretrains a backbone first).
"""


def get_config() -> dict:
  return {
      "model": "mobilenet_v2",
      "weights": None,
      "alpha": 0.35,
      "image_size": 32,
      "dataset": "mnist5k:5-9",
      "batch_size": 32,
      "train_steps": 100,
      "eval_every": 50,
      "checkpoint_every": 50,
      "summary_every": 10,
  }
