"""absl entry points of k4p1: flags become configs, then one library call.

Importing the package (or `experiments.configs`, `experiments.launch`,
`experiments.make_tables`) imports no TensorFlow. An entry point that trains
imports it in its `main`, through `logs.import_tensorflow_quietly` (without
TensorFlow's start-up chatter), before it imports the library that uses it.
"""
