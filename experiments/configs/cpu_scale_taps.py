r"""CPU-scale TAPS comparison: which layers a task patches, learned vs fixed.

The offline setting of `cpu_scale` (the dogs-tuned MobileNetV2 1.0 at 32 px
on the shipped `mnist5k` digits, 120 steps of 64 images, seeds 0, 1, 2, every
other setting a default), with every row at learning rate 0.0142 per 96
images: the rate at which each fixed patch kind scored best in `cpu_scale`'s
sweep (results/cpu_scale/tables.md; chosen before any TAPS run). Rows:

* TAPS as published (`taps+scale_bias+logits`) at lambda 0.1, 1 and 10;
* logits, scale_bias+logits, depthwise+logits and full fine-tuning.

The TAPS penalty starts after its default warm-up (a tenth of the run here:
12 steps). Run (the --weights flag is required):

  python -m experiments.launch --config=cpu_scale_taps \
      --results_dir=results/cpu_scale_taps/runs \
      --weights=../shared/data/mobilenet_v2_1.0_160_dogs.h5
  python -m experiments.make_tables --results_dir=results/cpu_scale_taps/runs \
      --out_dir=results/cpu_scale_taps
"""

from experiments.configs import _paper
from experiments.configs import cpu_scale

REQUIRED_FLAGS = cpu_scale.REQUIRED_FLAGS
SEEDS = cpu_scale.SEEDS
LEARNING_RATE = 0.0142
TAPS_PATCH = "taps+scale_bias+logits"
TAPS_LAMBDAS = (0.1, 1.0, 10.0)
REFERENCE_PATCHES = ("logits", "scale_bias+logits", "depthwise+logits", "full")


def get_config() -> dict:
  return cpu_scale.get_config()


def get_rows() -> list:
  rows = []
  for lam in TAPS_LAMBDAS:
    rows += _paper.transfer_rows(
        "mobilenet_v2", (cpu_scale.DATASET,), (TAPS_PATCH,),
        learning_rates=(LEARNING_RATE,), image_size=cpu_scale.IMAGE_SIZE,
        taps_lambda=lam)
  rows += _paper.transfer_rows(
      "mobilenet_v2", (cpu_scale.DATASET,), REFERENCE_PATCHES,
      learning_rates=(LEARNING_RATE,), image_size=cpu_scale.IMAGE_SIZE)
  return rows
