"""Multi-task learning (paper claims 3-4): one MobileNetV2, one patch per task.

Five tasks trained simultaneously at 224 px -- CIFAR-10, CIFAR-100, Stanford
Cars, FGVC Aircraft, Oxford Flowers-102 -- each step taking one batch of every
task and summing the losses (the synchronous form of one worker per task).
Rows: a frozen shared ImageNet base with per-task logits, S/B+logits,
DW+logits and S/B+DW+logits patches; and a trained shared base with per-task
logits (the usual multi-head model) or S/B+logits. The paper's exact task
sets are not known here (see BUILD_NOTES.md); compare each row with the
single-task rows of `paper_transfer_mobilenet_v2`.
"""

TASKS = ("cifar10", "cifar100", "cars196", "fgvc_aircraft", "oxford_flowers102")
FROZEN_PATCHES = ("logits", "scale_bias+logits", "depthwise+logits",
                  "scale_bias+depthwise+logits")
TRAINED_PATCHES = ("logits", "scale_bias+logits")


def get_config() -> dict:
  return {"model": "mobilenet_v2", "weights": "imagenet", "alpha": 1.0,
          "image_size": 224, "tasks": TASKS, "task_sampling": "all"}


def get_rows() -> list:
  rows = [{"patch": spec, "shared": "frozen"}
          for spec in FROZEN_PATCHES]
  rows += [{"patch": spec, "shared": "trained"}
           for spec in TRAINED_PATCHES]
  return rows
