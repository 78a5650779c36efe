"""absl entry points of k4p1: flags become configs, then one library call.

`experiments.run` runs every kind of run (transfer, multi-task, sequential,
multi-resolution, pretraining), read from its flags; `experiments.transfer`
and `experiments.multitask` are its former names. `demo`, `launch`,
`make_tables`, `local_cluster` and `check_folder_transfer` build on it.

Importing the package, `experiments.configs` or an entry point imports no
TensorFlow, defines no flag and leaves stderr alone: an entry point defines
its flags in its `main`, and one that trains imports TensorFlow there, through
`logs.import_tensorflow_quietly` (without TensorFlow's start-up chatter),
before it imports the library that uses it.
"""
