r"""CPU-scale TAPS comparison: which layers a task patches, learned vs fixed.

The 32-px offline setting of `cpu_scale_32px_copy` (the config named
`cpu_scale` when these runs were made: the dogs-tuned MobileNetV2 1.0 at 32 px
on the shipped `mnist5k` digits, 120 steps of 64 images, seeds 0, 1, 2, every
other setting a default of then, so `bn_init=copy` now), with every row at
learning rate 0.0142 per 96 images: the rate at which each fixed patch kind
scored best in that config's sweep (results/cpu_scale_32px_copy/tables.md;
chosen before any TAPS run). Rows:

* TAPS as published (`taps+scale_bias+logits`) at lambda 0.1, 1 and 10;
* logits, scale_bias+logits, depthwise+logits and full fine-tuning.

The TAPS penalty starts after its default warm-up (a tenth of the run here:
12 steps). The rows and their ids are those of the committed runs
(results/cpu_scale_taps/runs). Run (the --weights flag is required):

  python -m experiments.launch --config=cpu_scale_taps \
      --results_dir=results/cpu_scale_taps/runs \
      --weights=../shared/data/mobilenet_v2_1.0_160_dogs.h5
  python -m experiments.make_tables --results_dir=results/cpu_scale_taps/runs \
      --out_dir=results/cpu_scale_taps
"""

from experiments import configs
from experiments.configs import _paper
from experiments.configs import cpu_scale_32px_copy as setting

REQUIRED_FLAGS = setting.REQUIRED_FLAGS
SEEDS = setting.SEEDS
LEARNING_RATE = 0.0142
TAPS_PATCH = "taps+scale_bias+logits"
TAPS_LAMBDAS = (0.1, 1.0, 10.0)
REFERENCE_PATCHES = ("logits", "scale_bias+logits", "depthwise+logits", "full")


def get_config() -> dict:
  return setting.get_config()


def get_rows() -> list:
  rows = []
  for lam in TAPS_LAMBDAS:
    rows += _paper.transfer_rows(
        "mobilenet_v2", (setting.DATASET,), (TAPS_PATCH,),
        learning_rates=(LEARNING_RATE,), image_size=setting.IMAGE_SIZE,
        taps_lambda=lam)
  rows += _paper.transfer_rows(
      "mobilenet_v2", (setting.DATASET,), REFERENCE_PATCHES,
      learning_rates=(LEARNING_RATE,), image_size=setting.IMAGE_SIZE)
  # The runs' directories were named before rows could carry bn_init.
  base = {k: v for k, v in get_config().items() if k != "bn_init"}
  for row in rows:
    row["row_id"] = configs.make_row_id({**base, **row})
  return rows
