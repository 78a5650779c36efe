"""Model patches: per-task parameters injected into a shared base model."""

from k4p1.patches.inject import apply_patch
from k4p1.patches.inject import BN_STATS
from k4p1.patches.accounting import count_params
from k4p1.patches.accounting import describe_targets
from k4p1.patches.accounting import lora_summary
from k4p1.patches.inject import leaf_layers
from k4p1.patches.variables import named_patch_variables
from k4p1.patches.variables import named_shared_variables
from k4p1.patches.info import patch_info
from k4p1.patches.variables import patch_variables
from k4p1.patches.info import PatchInfo
from k4p1.patches.info import set_bn_init
from k4p1.patches.info import set_bn_statistics
from k4p1.patches.variables import set_shared_trainable
from k4p1.patches.variables import shared_variables
from k4p1.patches.io import atomic_write_bytes
from k4p1.patches.io import fingerprint
from k4p1.patches.io import load_patch
from k4p1.patches.io import PatchFileError
from k4p1.patches.io import PatchMismatchError
from k4p1.patches.io import read_patch_file
from k4p1.patches.io import save_patch
from k4p1.patches.layers import FrozenStatsBatchNormalization
from k4p1.patches.litert import export_multitask as export_multitask_tflite
from k4p1.patches.litert import export_task as export_task_tflite
from k4p1.patches.litert import LiteRTModel
from k4p1.patches.litert import QUANTIZATIONS as TFLITE_QUANTIZATIONS
from k4p1.patches.litert import read_metadata as read_tflite_metadata
from k4p1.patches.litert import run as run_tflite
from k4p1.patches.gates import bake
from k4p1.patches.gates import bake as bake_taps
from k4p1.patches.gates import summary as taps_summary
from k4p1.patches.taps import GatedConv
from k4p1.patches.lora import GatedLoRA
from k4p1.patches.lora import LoRALayer
from k4p1.patches.spec import KIND_TARGETS
from k4p1.patches.spec import KINDS
from k4p1.patches.spec import PatchSpec
from k4p1.patches.serving import export_multitask
from k4p1.patches.serving import PAD_LOGIT
from k4p1.patches.serving import route_tasks
