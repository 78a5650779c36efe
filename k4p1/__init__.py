"""k4p1: K for the Price of 1 -- model patches for multi-task and transfer learning."""

__version__ = "0.1.0"
