"""The facts every layer shares, with no TensorFlow: the lowest floor of k4p1.

It imports the standard library only (no NumPy, TensorFlow or Keras, nothing
else of k4p1), so that the report, the experiment configs, the launcher and
the flags read the same facts as the trainer without importing TensorFlow.

- `kinds`: the patch kinds, canonical order, descriptions, combination rules;
- `choices`: the valid values of every named setting (BN statistics, BN init,
  strategies, samplers, LiteRT quantizations, architectures, ...);
- `defaults`: the paper's recipe (learning rate 0.045 for a batch of 96,
  decay) and TAPS's defaults;
- `names`: task-name rules, dataset-name prefixes, row ids;
- `config`: `RunConfig`, every setting of a run, and `merge_overrides`;
- `run_kinds`: one `RunPolicy` per kind of run (what it builds, shares,
  writes, exports; which report table).
"""

from k4p1.core import choices
from k4p1.core import config
from k4p1.core import defaults
from k4p1.core import kinds
from k4p1.core import names
from k4p1.core import run_kinds
from k4p1.core.config import merge_overrides
from k4p1.core.config import RunConfig
