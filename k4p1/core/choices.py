"""The valid values of every setting that takes one of a few names.

Each tuple is the one list of its setting: `RunConfig`'s help and flags,
`k4p1.train.checks` and the code that acts on the value read it from here.
The first entry is the default where the setting has one.
"""

# Backbone architectures; `k4p1.architectures` holds each one's table row
# (and checks at import that its table names exactly these).
ARCHITECTURES = ("mobilenet_v2", "inception_v3", "resnet50", "efficientnet_b0",
                 "mobilenet_v3_large")
# Sources of TensorFlow checkpoints a backbone can load (`weights` is
# "<source>:<path>"), in the order they are listed to users.
CHECKPOINT_SOURCES = ("slim", "ssd_tf1", "ssd_tf2")
CHECKPOINT_PREFIXES = tuple(f"{source}:" for source in CHECKPOINT_SOURCES)
# The valid `weights` values, for error messages and flag help.
WEIGHTS_CHOICES = ("none, imagenet, a .keras/.h5/.weights.h5 path, or " +
                   ", ".join(f"{p}<ckpt>" for p in CHECKPOINT_PREFIXES))

# Kinds of run, read from a config's fields (`RunConfig.experiment`).
EXPERIMENTS = ("transfer", "pretrain", "multitask", "multires", "sequential")
# Statistics of the BN layers a patch owns: the task's own, re-estimated, or
# the base's, frozen.
BN_STATS = ("task", "frozen")
# How a trained BN layer's scale and bias start: "preserve" re-parameterises
# them so that, with the task's statistics, the layer computes the base's
# function (k4p1.train.bn_init); "copy" takes the base's values as they are
# (the paper-literal ablation).
BN_INIT = ("preserve", "copy")
# Whether the shared base stays frozen or learns from every task.
SHARED = ("frozen", "trained")
# Samplers of one task per step (k4p1.train.steps.SampledTaskStep).
SAMPLERS = ("round_robin", "proportional")
# "all": every step trains one batch of every task.
TASK_SAMPLING = ("all",) + SAMPLERS
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")
OPTIMIZERS = ("rmsprop", "sgd", "adam")
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")
INPUT_PIPELINES = ("per_worker", "per_replica")
# `jit_compile` as the command line spells it (the library also takes bools).
JIT_COMPILE = ("auto", "true", "false")
# Post-training quantizations of a LiteRT export (k4p1.patches.litert).
TFLITE_QUANTIZATIONS = ("none", "float16", "dynamic_int8", "int8")
