r"""CPU-scale reproduction: every table of the paper, shrunk to ~30 min on 2 cores.

An ImageNet-derived MobileNetV2 1.0 (Keras' ImageNet weights, fine-tuned on
19 dog breeds: ../shared/data/mobilenet_v2_1.0_160_dogs.h5) transferred at
64 px to the offline MNIST digits (`mnist5k`: 4,000 train / 1,000 test
images, 10 classes). Rows:

* transfer: logits, bias+logits, scale_bias+logits, depthwise+logits,
  scale_bias+depthwise+logits and full at the paper's learning rate 0.045;
* the Appendix B.2 sweep: logits, scale_bias+logits and full at 0.0045,
  0.0142, 0.142 and 0.45 too;
* multi-task: digits 0-4 and 5-9 as two tasks on one frozen base with an
  S/B+logits patch each, and the same two tasks trained alone (baselines);
* ablation: bias+logits and scale_bias+logits with `bn_stats="frozen"` (BN
  keeps the base's statistics instead of re-estimating them on the digits).

Every run is 120 steps of 64 images (~1.9 epochs of the training split)
with BN momentum 0.9, since the default 0.999 needs thousands of steps to
settle. Run (the --weights flag is required):

  python -m experiments.launch --config=cpu_scale \
      --results_dir=results/cpu_scale/runs \
      --weights=../shared/data/mobilenet_v2_1.0_160_dogs.h5
  python -m experiments.make_tables --results_dir=results/cpu_scale/runs \
      --out_dir=results/cpu_scale
"""

from experiments import configs
from experiments.configs import _paper

REQUIRED_FLAGS = ("weights",)
DATASET = "mnist5k"
IMAGE_SIZE = 64
PATCHES = ("logits", "bias+logits", "scale_bias+logits", "depthwise+logits",
           "scale_bias+depthwise+logits", "full")
MULTITASK_TASKS = ("mnist5k:0-4", "mnist5k:5-9")
MULTITASK_PATCH = "scale_bias+logits"


def get_config() -> dict:
  return {
      "model": "mobilenet_v2",
      "weights": configs.required("weights",
                                  "<path>/mobilenet_v2_1.0_160_dogs.h5"),
      "alpha": 1.0,
      "image_size": IMAGE_SIZE,
      "dataset": DATASET,
      "batch_size": 64,
      "train_steps": 120,
      "bn_momentum": 0.9,
      "eval_every": 0,
      "checkpoint_every": 0,
      "summary_every": 10,
  }


def get_rows() -> list:
  rows = _paper.transfer_rows("mobilenet_v2", (DATASET,), PATCHES,
                              image_size=IMAGE_SIZE)
  rows += [{"entry": "multitask", "tasks": MULTITASK_TASKS,
            "patch": MULTITASK_PATCH, "shared": "frozen",
            "learning_rate": _paper.PAPER_LEARNING_RATE}]
  rows += _paper.transfer_rows("mobilenet_v2", MULTITASK_TASKS,
                               (MULTITASK_PATCH,), image_size=IMAGE_SIZE)
  sweep = [lr for lr in _paper.LR_SWEEP if lr != _paper.PAPER_LEARNING_RATE]
  rows += _paper.transfer_rows("mobilenet_v2", (DATASET,),
                               _paper.LR_SWEEP_PATCHES, learning_rates=sweep,
                               image_size=IMAGE_SIZE)
  # Ablation: S/B patches normalising with the base's (ImageNet) statistics.
  rows += _paper.transfer_rows("mobilenet_v2", (DATASET,),
                               ("bias+logits", "scale_bias+logits"),
                               image_size=IMAGE_SIZE, bn_stats="frozen")
  return rows
