"""Numbers of the paper's recipe, of TAPS and of LoRA that more than one module needs.

The recipe is TF-slim's MobileNetV2 training script (../shared/PAPER.md):
learning rate 0.045 for a batch of 96, scaled linearly with the batch, x0.98
every 2.5 epochs (staircase). `RunConfig`'s defaults, the optimizer and loss
builders, the report (which learning rate is "the paper's") and the
experiment configs read them from here.
"""

from k4p1.core import kinds as kinds_lib

PAPER_LEARNING_RATE = 0.045
REFERENCE_BATCH = 96  # The batch PAPER_LEARNING_RATE is given for.
LR_DECAY_RATE = 0.98
LR_DECAY_EPOCHS = 2.5
LABEL_SMOOTHING = 0.1
WEIGHT_DECAY = 4e-5
# Epochs trained when neither `train_steps` nor `train_epochs` is set. The
# paper does not state its fine-tuning length; see BUILD_NOTES.md.
TRAIN_EPOCHS = 30.0

# TAPS (MattWallingford/TAPS). Runs recorded before these settings existed
# ran with these values, so the report reads them as the missing ones.
TAPS_LAMBDA = 1.0  # Weight of the sparsity penalty.
TAPS_THRESHOLD = 0.1  # A gate opens where its layer's score is >= this.
TAPS_SCORE_INIT = 0.15  # Every score's initial value (above the threshold).
TAPS_WARMUP_EPOCHS = 2.0  # Epochs before the penalty starts (`--warmup_epochs`).

# LoRA (`lora` patches): the rank r of every residual (alpha / r) * A @ B; its
# alpha defaults to the rank (a scale of 1).
LORA_RANK = 4
# LoRA factors behind frozen BatchNormalization layers (a `lora` patch with no
# BN kind) ran away at the paper's rate at every rank (results/cpu_scale_lora:
# chance accuracy at 0.045, their best at 0.0142): nothing renormalises a
# growing residual there. With the task's own BN layers training (`lora` with
# `scale_bias`), the paper's rate was the best of the three.
LORA_FROZEN_BN_LEARNING_RATE = 0.0142


def learning_rate(patch: str) -> float:
  """The default learning rate (per REFERENCE_BATCH images) of a patch spec."""
  patch_kinds = kinds_lib.normalize(kinds_lib.split(patch))
  if "lora" in patch_kinds and not patch_kinds & kinds_lib.BN_KINDS:
    return LORA_FROZEN_BN_LEARNING_RATE
  return PAPER_LEARNING_RATE
