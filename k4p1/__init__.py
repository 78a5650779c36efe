"""k4p1: K for the Price of 1 -- model patches for multi-task and transfer learning.

Importing k4p1 makes TensorFlow's CPU allocator a pooled one (BFC) unless
`TF_CPU_ALLOCATOR_USE_BFC` is set already (`=false` keeps TensorFlow's own
choice). TensorFlow reads the variable at its first op, so this takes effect
when k4p1 is imported before any TensorFlow work. Without it, on a CPU where
TensorFlow leaves oneDNN off (no AVX-512 VNNI/BF16 or AMX, e.g. AVX2), every
tensor comes from malloc: glibc maps each large activation fresh and unmaps it
when freed, so every step page-faults its activations in again, ~30% of a
training step's CPU time at 224 px (BUILD_NOTES.md, "Training speed on AVX2").
With oneDNN on, TensorFlow already pools; results are the same either way.
"""

import os as _os

__version__ = "0.1.0"

_os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
