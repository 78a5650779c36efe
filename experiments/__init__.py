"""absl entry points of k4p1: flags become configs, then one library call.

Importing the package imports TensorFlow without its start-up chatter
(`experiments.logs`).
"""

from experiments import logs as _logs

_logs.import_tensorflow_quietly()
