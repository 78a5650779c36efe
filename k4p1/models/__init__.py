"""Backbones from `keras.applications` and the weights they load."""

from k4p1.models.backbones import ARCHITECTURE_TABLE
from k4p1.models.backbones import ARCHITECTURES
from k4p1.models.backbones import Architecture
from k4p1.models.backbones import build_backbone
from k4p1.models.backbones import CHECKPOINT_PREFIXES
from k4p1.models.backbones import check_weights
from k4p1.models.backbones import DEFAULT_IMAGE_SIZE
from k4p1.models.backbones import get_architecture
from k4p1.models.backbones import load_weights_file
from k4p1.models.backbones import normalize_weights
from k4p1.models.backbones import WEIGHTS_CHOICES
