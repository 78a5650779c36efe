"""CPU speed fixes that must not change results: the pooled allocator, eval.

- k4p1's entry points (not `import k4p1`) make TensorFlow's CPU allocator the
  pooled BFC allocator (unless `TF_CPU_ALLOCATOR_USE_BFC` is set): without oneDNN, TensorFlow's
  default takes every tensor from malloc, which page-faults each step's
  activations in again (BUILD_NOTES.md, "Training speed on AVX2").
- Training steps under both allocators give the same losses and variables.
- Evaluation is one traced pass per model over an iterator argument (not the
  `Dataset.reduce` AutoGraph makes of a loop over a captured dataset, whose
  body tf.data instantiates again at every call), with fused inference BN as
  runs trace it (`Evaluator`); it counts exactly what the Keras model predicts.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from k4p1 import eval as eval_lib
from k4p1 import models
from k4p1 import patches
from k4p1.train import fused_batch_norm

# Results depend on the CPU kernels (oneDNN or Eigen): .ci/run runs these
# again with the other family (conftest.py, `kernels`).
pytestmark = pytest.mark.kernels

SIZE, CLASSES = 32, 5

# A few training steps; run in a fresh process per allocator, since
# TensorFlow picks its CPU allocator once per process.
_TRAIN_SCRIPT = textwrap.dedent("""
    import json, sys
    import k4p1  # Sets the allocator default before TensorFlow's first op.
    import keras, numpy as np, tensorflow as tf
    from k4p1 import models, patches, train
    out = {}
    for spec in ("scale_bias+depthwise+logits",):
      keras.utils.set_random_seed(0)
      base = models.build_backbone("mobilenet_v2", 64, weights=None, alpha=0.35)
      task = patches.apply_patch(base, spec, task="t", num_classes=5)
      rng = np.random.default_rng(0)
      data = tf.data.Dataset.from_tensor_slices((
          rng.uniform(-1, 1, (24, 64, 64, 3)).astype(np.float32),
          rng.integers(0, 5, 24).astype(np.int32))).batch(8).repeat()
      variables = train.unique_trainable_variables([task])
      optimizer = train.build_optimizer("rmsprop", 0.01)
      optimizer.build(variables)
      step = train.make_train_step(
          tf.distribute.get_strategy(), [train.TrainTask("t", task, 5, data, 8)],
          optimizer, variables, tf.Variable(0, dtype=tf.int64))
      iterators = (iter(data),)
      losses = [float(step(iterators)["t/loss_sum"]) for _ in range(3)]
      out[spec] = {"losses": losses,
                   "variables": [v.numpy().ravel().tolist() for v in task.weights]}
    try:  # BFC keeps statistics; the malloc allocator does not.
      out["bfc_stats"] = bool(tf.config.experimental.get_memory_info("CPU:0"))
    except ValueError:
      out["bfc_stats"] = False
    from tensorflow.python.util import _pywrap_util_port
    out["onednn"] = bool(_pywrap_util_port.IsMklEnabled())
    print("RESULT " + json.dumps(out))
    """)


def _run_child(tmp_path, code, env_value):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
  env.pop("TF_CPU_ALLOCATOR_USE_BFC", None)
  if env_value is not None:
    env["TF_CPU_ALLOCATOR_USE_BFC"] = env_value
  script = tmp_path / "child.py"
  script.write_text(code)
  done = subprocess.run([sys.executable, str(script)], env=env, text=True,
                        capture_output=True, timeout=600, check=True)
  (line,) = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
  return json.loads(line[len("RESULT "):])


def test_entry_points_pool_cpu_memory_unless_told_otherwise(tmp_path):
  show = "print('RESULT ' + json.dumps(os.environ.get('TF_CPU_ALLOCATOR_USE_BFC')))"
  # `import k4p1` changes no process setting.
  assert _run_child(tmp_path, "import json, os, k4p1\n" + show, None) is None
  entry = ("import json, os, k4p1\nfrom experiments import logs\n"
           "logs.import_tensorflow_quietly()\n" + show)
  assert _run_child(tmp_path, entry, None) == "true"
  assert _run_child(tmp_path, entry, "false") == "false"


def test_training_steps_are_the_same_under_both_cpu_allocators(tmp_path):
  pooled = _run_child(tmp_path, _TRAIN_SCRIPT, "true")  # The entry points' default.
  plain = _run_child(tmp_path, _TRAIN_SCRIPT, "false")
  onednn = plain.pop("onednn")
  assert pooled.pop("onednn") == onednn
  assert pooled.pop("bfc_stats")
  # With oneDNN on (AVX-512 CPUs, or TF_ENABLE_ONEDNN_OPTS=1) TensorFlow keeps
  # its pooled allocator whatever TF_CPU_ALLOCATOR_USE_BFC says: both runs
  # pool, and the check below still holds. Without oneDNN, "false" is malloc.
  assert plain.pop("bfc_stats") == onednn
  for spec, expected in plain.items():
    assert np.all(np.isfinite(expected["losses"]))
    # The allocator changes where tensors live, not what is computed.
    assert pooled[spec]["losses"] == expected["losses"], spec
    for actual, wanted in zip(pooled[spec]["variables"], expected["variables"]):
      np.testing.assert_array_equal(actual, wanted, err_msg=spec)


def _task():
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", SIZE, weights=None, alpha=0.35)
  for layer in patches.leaf_layers(base):  # Inference BN is not the identity.
    if isinstance(layer, keras.layers.BatchNormalization):
      channels = layer.moving_mean.shape[0]
      layer.moving_mean.assign(np.linspace(-0.2, 0.2, channels))
      layer.moving_variance.assign(np.linspace(0.5, 2.0, channels))
  return patches.apply_patch(base, "scale_bias+logits", task="t",
                             num_classes=CLASSES)


def _op_types(graph) -> set:
  graph_def = graph.as_graph_def()
  nodes = list(graph_def.node)
  for function in graph_def.library.function:
    nodes += list(function.node_def)
  return {node.op for node in nodes}


@pytest.mark.parametrize("replicas", [1, 2])
def test_eval_pass_is_traced_once_and_counts_what_the_model_predicts(replicas):
  task = _task()
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (9, SIZE, SIZE, 3)).astype(np.float32)
  predictions = np.argmax(task(images, training=False).numpy(), axis=-1)
  # The first 6 labels are the predictions, the others are not.
  labels = np.where(np.arange(9) < 6, predictions, (predictions + 1) % CLASSES)
  # Batches of 4: the last has 1 example (with 2 replicas, one gets none).
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
  strategy = None
  if replicas == 2:
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    dataset = strategy.experimental_distribute_dataset(dataset)
  evaluate = eval_lib.make_accuracy_fn(
      fused_batch_norm.fused_view(task), dataset, strategy)
  for _ in range(3):
    assert evaluate() == {"accuracy": 6 / 9, "correct": 6, "examples": 9}
  function = evaluate.traced_function
  assert function.experimental_get_tracing_count() == 1
  types = _op_types(function.get_concrete_function(iter(dataset)).graph)
  assert "ReduceDataset" not in types
  assert "FusedBatchNormV3" in types  # k4p1's fused inference BN.
  assert "Rsqrt" not in types  # Not Keras' own BN ops.
