"""k4p1: K for the Price of 1 -- model patches for multi-task and transfer learning.

Importing k4p1 defines things and changes no process setting. Its entry
points (`experiments/`) also pool TensorFlow's CPU memory
(`TF_CPU_ALLOCATOR_USE_BFC=true` unless set; BUILD_NOTES.md, "Training speed
on AVX2"): in your own programs on a CPU where TensorFlow leaves oneDNN off
(e.g. AVX2), set it before TensorFlow is imported.
"""

__version__ = "0.1.0"
