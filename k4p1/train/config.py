"""`RunConfig` and the choices of its fields, re-exported from `k4p1.core`.

The config is plain data and lives in the TensorFlow-free core
(`k4p1.core.config`); these names are kept for code that imports them from
here.
"""

from k4p1.core.choices import BN_INIT
from k4p1.core.choices import BN_STATS
from k4p1.core.choices import EXPERIMENTS
from k4p1.core.choices import SHARED
from k4p1.core.choices import TASK_SAMPLING
from k4p1.core.choices import TFLITE_QUANTIZATIONS
from k4p1.core.config import DEFAULT_TRAIN_EPOCHS
from k4p1.core.config import IDENTITY_FIELDS
from k4p1.core.config import merge_overrides
from k4p1.core.config import RunConfig

__all__ = ["BN_INIT", "BN_STATS", "DEFAULT_TRAIN_EPOCHS", "EXPERIMENTS",
           "IDENTITY_FIELDS", "merge_overrides", "RunConfig", "SHARED",
           "TASK_SAMPLING", "TFLITE_QUANTIZATIONS"]
