"""The offline demo's settings (`python -m experiments.demo`, README's first command).

`get_config()` is every patch run's config: a MobileNetV2 alpha 0.35 at 32 px
on `mnist5k:5-9`, 200 steps of 64 images, the recipe's learning rate, op
determinism, every other setting a default; the runs go under `workdir`. The
backbone run takes `PRETRAIN` on top of it (from scratch, 600 steps on the
other digits); then each patch of `PATCHES` trains on that backbone. The demo's
flags change any of it (`experiments/demo.py`). As `--config=demo` of
`experiments.run`, it is one such run from random weights.
"""

PATCHES = ("logits", "scale_bias+logits", "depthwise+logits",
           "scale_bias+depthwise+logits", "full")
# The backbone's run: every weight, from scratch, on the other half of the
# digits (`k4p1.train.pretrain_backbone`).
PRETRAIN = {"weights": None, "dataset": "mnist5k:0-4", "train_steps": 600}


def get_config() -> dict:
  return {
      "workdir": "/tmp/k4p1_demo",
      "model": "mobilenet_v2",
      "weights": None,
      "alpha": 0.35,
      "image_size": 32,
      "dataset": "mnist5k:5-9",
      "batch_size": 64,
      "train_steps": 200,
      "deterministic": True,
      "eval_every": 0,
      "checkpoint_every": 100,
      "summary_every": 10,
  }
