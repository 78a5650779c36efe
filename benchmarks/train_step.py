r"""Training-step throughput of each patch regime, as a ratio to full fine-tuning.

Regimes (MobileNetV2, random weights, in-memory batches, so the input pipeline
is not measured):
  full, scale_bias+logits, scale_bias+depthwise+logits, logits
      `k4p1.train.make_train_step` (forward, backward to the patch's
      variables, RMSProp update) on the patched model;
  logits_cached
      `--cache_features`: the head's training step on cached pooled features,
      i.e. each epoch after the first (the first runs the backbone once per
      image, at the `inference` regime's rate);
  keras_fit
      bare Keras: `model.fit` of the same full model (base + Dense head),
      RMSprop, sparse cross-entropy: the framework-overhead baseline;
  inference
      the forward pass alone (`training=False`, fused BN), the floor of any
      training step: what `logits` can at best reach;
  eval
      `k4p1.eval.make_accuracy_fn` (what runs evaluate with) on the
      `scale_bias+logits` task model, one pass over `--steps` batches per
      call: should match `inference` (its ratio to it is printed);
  depthwise+logits, lora+logits, lora+scale_bias+logits, taps+scale_bias+logits (only when
  named in `--regimes`)
      the training step of those patch kinds, like `full` (LoRA at
      `--lora_rank`; TAPS computes every residual's gradient, open or not);
  precise_bn, litert_export (only when named in `--regimes`)
      `PreciseBatchNorm.update` over `--steps` batches of the
      `scale_bias+logits` task (PreciseBN's and bn_init's pass); one float32
      LiteRT export of that task per call (only its ratios mean anything).

With `--onednn=both` every regime runs twice, one worker with TensorFlow's
oneDNN kernels on and one with them off, in the same rounds; a second table
gives the per-round speed ratio of on to off for each regime.

Each regime runs in its own worker process (honest peak RSS, VmHWM), all
workers of one image size alive at once; the parent times them round-robin,
`--rounds` rounds of `--steps` steps each, so that load from other processes
on a shared machine hits every regime alike. Per regime: median images/sec,
wall and CPU ms/step (user + system, all threads: close to 2x ms/step means
both cores were busy), and the ratio to `full` per round, paired within the
round, of wall time and of CPU time, printed as median [min–max] over rounds
(`eval` also to `inference`). The table heads with the CPU's model and vector
extensions and TensorFlow's kernels and allocator in the workers (oneDNN,
BFC); JSON (written atomically) holds every round and the load average.

  python benchmarks/train_step.py                                # 224 and 96 px
  python benchmarks/train_step.py --image_sizes=96 --rounds=3 --output=/tmp/ts.json
  python benchmarks/train_step.py --nofused_batch_norm           # the old BN path
  python benchmarks/train_step.py --cpu_allocator=malloc --threads=1  # see flags
  python benchmarks/train_step.py --onednn=both \
      --regimes=full,scale_bias+logits,logits,inference,eval,precise_bn,litert_export
  python benchmarks/train_step.py --image_sizes=64 --lora_rank=4 \
      --regimes=full,scale_bias+logits,depthwise+logits,lora+logits,lora+scale_bias+logits
"""

import json
import os
import platform
import statistics
import sys
import time

from absl import app
from absl import flags

import bench_util  # Beside this script (benchmarks/).
from k4p1 import atomic  # Standard library only: the parent stays TF-free.

REGIMES = ("full", "scale_bias+logits", "scale_bias+depthwise+logits", "logits",
           "logits_cached", "keras_fit", "inference", "eval")
# Patch kinds' training steps timed on request (`--regimes`).
PATCH_REGIMES = ("depthwise+logits", "lora+logits", "lora+scale_bias+logits",
                 "taps+scale_bias+logits")
# Timed on request (`--regimes`), e.g. for `--onednn=both`.
EXTRA_REGIMES = ("precise_bn", "litert_export")
ONEDNN = ("inherit", "on", "off", "both")

_IMAGE_SIZES = flags.DEFINE_list("image_sizes", ["224", "96"], "Input sizes (px).")
_REGIMES = flags.DEFINE_list("regimes", list(REGIMES), "Regimes to time.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps per regime per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 7, "Round-robin rounds.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 2, "Untimed steps (tracing).")
_ALPHA = flags.DEFINE_float("alpha", 1.0, "MobileNetV2 width multiplier.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 100, "Head size.")
_LORA_RANK = flags.DEFINE_integer("lora_rank", 4, "Rank of the lora regimes.")
_JIT = flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                         "XLA for k4p1's step (auto: off on CPU).")
_MIXED = flags.DEFINE_enum("mixed_precision", "none",
                           ["none", "mixed_float16", "mixed_bfloat16"],
                           "Keras dtype policy of the k4p1 regimes.")
_FUSED_BN = flags.DEFINE_bool("fused_batch_norm", True, "k4p1's fused BN "
                              "(off: Keras' BN ops, the pre-issue-8 step).")
_CACHED_IMAGES = flags.DEFINE_integer("cached_images", 256, "Images whose "
                                      "features logits_cached extracts.")
_THREADS = flags.DEFINE_integer("threads", 0, "The workers' intra- and inter-op "
                                "threads (0: TensorFlow's default, one per core).")
_ALLOCATOR = flags.DEFINE_enum("cpu_allocator", "inherit",
                               list(bench_util.CPU_ALLOCATORS),
                               bench_util.CPU_ALLOCATOR_HELP)
_ONEDNN = flags.DEFINE_enum(
    "onednn", "inherit", list(ONEDNN), "The workers' TensorFlow CPU kernels "
    "(TF_ENABLE_ONEDNN_OPTS): inherit this process's environment, on, off, or "
    "both: every regime twice, one worker per setting, timed in the same "
    "rounds, with the per-round speed ratio of on to off.")
_OUTPUT = flags.DEFINE_string("output", "train_step.json", "JSON result path.")
# Internal: run as one regime's worker.
_WORKER = flags.DEFINE_string("worker", None, "Internal: the regime to serve.")
_SIZE = flags.DEFINE_integer("worker_image_size", 96, "Internal.")


def _build_worker(regime: str, size: int):
  """Returns (run(steps) -> seconds, info dict) for one regime."""
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from k4p1 import models  # pylint: disable=g-import-not-at-top
  from k4p1 import patches  # pylint: disable=g-import-not-at-top
  from k4p1 import train  # pylint: disable=g-import-not-at-top
  from k4p1.train import features_cache  # pylint: disable=g-import-not-at-top
  from k4p1.train import performance  # pylint: disable=g-import-not-at-top

  if _THREADS.value:
    tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
  batch, classes = _BATCH_SIZE.value, _NUM_CLASSES.value
  if regime != "keras_fit":
    performance.set_mixed_precision(_MIXED.value)
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
  labels = rng.integers(0, classes, batch).astype(np.int32)
  dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
  base = models.build_backbone("mobilenet_v2", size, weights=None,
                               alpha=_ALPHA.value)
  info = {"runtime": bench_util.tf_runtime()}

  if regime == "keras_fit":
    model = keras.Model(base.input, keras.layers.Dense(classes)(base.output))
    model.compile(optimizer=keras.optimizers.RMSprop(0.01, rho=0.9,
                                                     momentum=0.9, epsilon=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    info["patch_trainable"] = sum(int(np.prod(v.shape))
                                  for v in model.trainable_variables)
    marks = {}

    class Timer(keras.callbacks.Callback):

      def on_train_batch_begin(self, batch_index, logs=None):
        if batch_index == 0:
          marks["begin"] = time.perf_counter()

      def on_train_batch_end(self, batch_index, logs=None):
        for value in (logs or {}).values():
          float(value)  # Waits for the step.
        marks["end"] = time.perf_counter()

    def run(steps):
      model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0,
                callbacks=[Timer()])
      return marks["end"] - marks["begin"]

    return run, info

  if regime == "eval":
    from k4p1 import eval as eval_lib  # pylint: disable=g-import-not-at-top
    from k4p1.train import fused_batch_norm  # pylint: disable=g-import-not-at-top
    task = patches.apply_patch(base, "scale_bias+logits", task="bench",
                               num_classes=classes)
    info["patch_trainable"] = 0
    # One evaluation pass per call, over exactly the batches asked for; each
    # pass function is traced here or by the warm-up, never while timed. As
    # `k4p1.train.evaluation.Evaluator` builds it.
    view = fused_batch_norm.fused_view(task) if _FUSED_BN.value else task
    passes = {n: eval_lib.make_accuracy_fn(
        view, tf.data.Dataset.from_tensors((images, labels)).repeat(n))
              for n in {_WARMUP.value, _STEPS.value}}
    passes[_STEPS.value]()

    def run(steps):
      began = time.perf_counter()
      passes[steps]()  # Returns Python numbers: waits for the pass.
      return time.perf_counter() - began

    return run, info

  if regime in EXTRA_REGIMES:
    info["patch_trainable"] = 0
    return _build_extra_worker(regime, base, dataset, size), info

  if regime == "inference":
    from k4p1.train import fused_batch_norm  # pylint: disable=g-import-not-at-top
    info["patch_trainable"] = 0
    view = fused_batch_norm.fused_view(base) if _FUSED_BN.value else base

    @tf.function
    def forward(x):
      return view(x, training=False)

    def run(steps):
      began = time.perf_counter()
      for _ in range(steps):
        outputs = forward(images)
      outputs.numpy()
      return time.perf_counter() - began

    return run, info

  spec = "logits" if regime == "logits_cached" else regime
  rank = {"lora_rank": _LORA_RANK.value} if "lora" in spec else {}
  task = patches.apply_patch(base, spec, task="bench", num_classes=classes, **rank)
  info["patch_trainable"] = patches.count_params(task)["patch_trainable"]
  model = task
  if regime == "logits_cached":
    feature_model, model = features_cache.split_logits_model(task)
    count = max(batch, _CACHED_IMAGES.value // batch * batch)
    image_ds = tf.data.Dataset.from_tensors(images).repeat(count // batch)
    image_ds = tf.data.Dataset.zip((image_ds, tf.data.Dataset.from_tensors(
        labels).repeat(count // batch)))
    # The first epoch (this extraction) is the `inference` regime's forward
    # pass; it is not timed here, where the other workers are starting up.
    features, cached_labels = features_cache.extract_features(feature_model,
                                                              image_ds)
    dataset = features_cache.cached_dataset(features, cached_labels, batch)
  optimizer = performance.wrap_optimizer(train.build_optimizer("rmsprop", 0.01),
                                         _MIXED.value)
  variables = train.unique_trainable_variables([model])
  optimizer.build(variables)
  train_step = train.make_train_step(
      tf.distribute.get_strategy(),
      [train.TrainTask("bench", model, classes, dataset, batch)], optimizer,
      variables, tf.Variable(0, dtype=tf.int64), jit_compile=_JIT.value,
      fused_batch_norm=_FUSED_BN.value)
  iterators = (iter(dataset),)

  def run(steps):
    began = time.perf_counter()
    for _ in range(steps):
      outputs = train_step(iterators)
    outputs["bench/count"].numpy()  # Waits for the last step.
    return time.perf_counter() - began

  return run, info


def _build_extra_worker(regime: str, base, dataset, size: int):
  """run(steps) -> seconds of `precise_bn` or `litert_export`.

  precise_bn: `PreciseBatchNorm.update` over `steps` batches of the
  `scale_bias+logits` task (what PreciseBN and bn_init's pass run);
  litert_export: one float32 `litert.export_task` of that task per call,
  whatever `steps` is (its images/sec is batch * steps / export seconds: only
  ratios between workers of this regime mean anything).
  """
  import tempfile  # pylint: disable=g-import-not-at-top
  from k4p1 import patches  # pylint: disable=g-import-not-at-top
  from k4p1.patches import litert  # pylint: disable=g-import-not-at-top
  from k4p1.train import precise_bn  # pylint: disable=g-import-not-at-top
  task = patches.apply_patch(base, "scale_bias+logits", task="bench",
                             num_classes=_NUM_CLASSES.value)
  if regime == "precise_bn":
    updaters = {n: precise_bn.PreciseBatchNorm([(task, dataset.take(n))])
                for n in {_WARMUP.value, _STEPS.value}}

    def run(steps):
      began = time.perf_counter()
      updaters[steps].update()  # Assigns the statistics: waits for the pass.
      return time.perf_counter() - began

    return run
  directory = tempfile.mkdtemp(prefix="bench_litert_")

  def run_export(steps):
    del steps  # One export per call.
    began = time.perf_counter()
    litert.export_task(task, os.path.join(directory, "task.tflite"),
                       image_size=size)
    return time.perf_counter() - began

  return run_export


def _serve(regime: str, size: int) -> None:
  """Worker: build, warm up, then answer `run N` / `quit` on stdin."""
  began = time.perf_counter()
  run, info = _build_worker(regime, size)
  run(_WARMUP.value)
  info["warmup_s"] = time.perf_counter() - began
  print("READY " + json.dumps(info), flush=True)
  for line in sys.stdin:
    command = line.split()
    if command[0] == "run":
      cpu_began = bench_util.cpu_seconds()
      seconds = run(int(command[1]))
      cpu_seconds = bench_util.cpu_seconds() - cpu_began
      print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds,
                        "peak_rss_mb": bench_util.peak_rss_mb()}), flush=True)
    else:
      return


def _settings() -> tuple:
  """The oneDNN settings whose workers run: one, or ("on", "off")."""
  return ("on", "off") if _ONEDNN.value == "both" else (_ONEDNN.value,)


def _label(regime: str, setting: str) -> str:
  """A worker's row key: the regime, suffixed with its setting under both."""
  return f"{regime}@onednn_{setting}" if _ONEDNN.value == "both" else regime


def measure_size(size: int, regimes, argv) -> dict:
  """Round-robin timing of every regime (and oneDNN setting) at one size."""
  workers = []
  flags_out = [a for a in argv[1:] if not a.startswith("--output")]
  try:
    # Started together: building and tracing are mostly single-threaded.
    for regime in regimes:
      for setting in _settings():
        workers.append(bench_util.Worker(
            _label(regime, setting), __file__,
            [f"--worker={regime}", f"--worker_image_size={size}"] + flags_out,
            bench_util.worker_environment(_ALLOCATOR.value, setting)))
    for worker in workers:
      worker.wait_ready()
    samples = {w.label: [] for w in workers}
    cpu_ms = {w.label: [] for w in workers}
    peaks = {}
    for _ in range(_ROUNDS.value):
      for worker in workers:
        answer = worker.run(_STEPS.value)
        samples[worker.label].append(
            _BATCH_SIZE.value * _STEPS.value / answer["seconds"])
        cpu_ms[worker.label].append(1000 * answer["cpu_seconds"] / _STEPS.value)
        peaks[worker.label] = answer["peak_rss_mb"]
  finally:
    for worker in workers:
      worker.close()
  rows = {}
  for worker in workers:
    rates = samples[worker.label]
    rows[worker.label] = dict(
        worker.info, images_per_sec=statistics.median(rates),
        best_images_per_sec=max(rates), rounds=rates,
        ms_per_step=1000 * _BATCH_SIZE.value / statistics.median(rates),
        cpu_ms_per_step=statistics.median(cpu_ms[worker.label]),
        cpu_ms_rounds=cpu_ms[worker.label],
        peak_rss_mb=peaks[worker.label])
  _add_ratios(rows, regimes)
  return rows


def _add_ratios(rows: dict, regimes) -> None:
  """Paired per-round ratios: to `full` and `eval` to `inference` (within a
  setting), and under `--onednn=both` each regime's on to off."""
  for setting in _settings():
    full = rows.get(_label("full", setting))
    for regime in regimes:
      row = rows[_label(regime, setting)]
      row["ratio_to_full"] = (row["images_per_sec"] / full["images_per_sec"]
                              if full else None)
      if full:
        row.update(bench_util.paired_ratios(row, full, "full"))
      inference = rows.get(_label("inference", setting))
      if regime == "eval" and inference:
        row.update(bench_util.paired_ratios(row, inference, "inference"))
  if _ONEDNN.value == "both":
    for regime in regimes:
      on, off = rows[_label(regime, "on")], rows[_label(regime, "off")]
      on.update(bench_util.paired_ratios(on, off, "onednn_off"))


def _report(results, load_before, began) -> dict:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  import k4p1  # pylint: disable=g-import-not-at-top
  return {
      "benchmark": "train_step",
      "command": " ".join(["python", "benchmarks/train_step.py"] + sys.argv[1:]),
      "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
      "model": f"mobilenet_v2 alpha {_ALPHA.value}",
      "batch_size": _BATCH_SIZE.value, "steps_per_round": _STEPS.value,
      "rounds": _ROUNDS.value, "warmup_steps": _WARMUP.value,
      "jit_compile": _JIT.value, "mixed_precision": _MIXED.value,
      "fused_batch_norm": _FUSED_BN.value, "cpu_allocator": _ALLOCATOR.value,
      "threads": _THREADS.value, "onednn": _ONEDNN.value,
      "load_average_before": load_before, "load_average_after": os.getloadavg(),
      "wall_s": time.time() - began,
      "results": results,
      "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                  "cpu": bench_util.cpu_description(),
                  "tensorflow": tf.__version__, "keras": keras.__version__,
                  "k4p1": k4p1.__version__},
  }


def _print_onednn(results) -> None:
  """The on/off table: > 1 means oneDNN is faster (wall) or cheaper (CPU)."""
  print("\noneDNN on vs off (per-round ratio, median [min–max]; > 1: on is faster)")
  print("| px | regime | images/sec on | images/sec off | speed on/off (wall) | "
        "CPU time off/on | peak RSS MB on / off |")
  print("|---|---|---|---|---|---|---|")
  for size, rows in results.items():
    for label, on in rows.items():
      if not label.endswith("@onednn_on"):
        continue
      regime = label[:-len("@onednn_on")]
      off = rows[f"{regime}@onednn_off"]
      print(f"| {size} | {regime} | {on['images_per_sec']:.1f} | "
            f"{off['images_per_sec']:.1f} | "
            f"{bench_util.spread(on['ratio_to_onednn_off_rounds'])} | "
            f"{bench_util.spread(on['cpu_ratio_to_onednn_off_rounds'])} | "
            f"{on['peak_rss_mb']:.0f} / {off['peak_rss_mb']:.0f} |")


def main(argv):
  if _WORKER.value:
    _serve(_WORKER.value, _SIZE.value)
    return
  valid = REGIMES + PATCH_REGIMES + EXTRA_REGIMES
  unknown = sorted(set(_REGIMES.value) - set(valid))
  if unknown:
    raise app.UsageError(f"Unknown regimes {unknown}; valid: {', '.join(valid)}.")
  load_before = os.getloadavg()
  began = time.time()
  results = {}
  for size in (int(s) for s in _IMAGE_SIZES.value):
    results[str(size)] = measure_size(size, _REGIMES.value, sys.argv)
    print(f"{size} px done after {time.time() - began:.0f} s", file=sys.stderr)
    atomic.write_text_atomic(
        _OUTPUT.value,
        json.dumps(_report(results, load_before, began), indent=2))
  print(f"CPU: {bench_util.describe_cpu(bench_util.cpu_description())}; "
        + "; ".join(
            sorted({bench_util.describe_runtime(row.get("runtime"))
                    for rows in results.values() for row in rows.values()})))
  print(f"load average before {load_before[0]:.2f}, after "
        f"{os.getloadavg()[0]:.2f}; fused_batch_norm={_FUSED_BN.value}; "
        f"threads {_THREADS.value or 'default'}; "
        f"{_ROUNDS.value} rounds of {_STEPS.value} steps; ratios: median "
        "[min–max] over rounds")
  print("| px | regime | trained params | images/sec | ms/step | CPU ms/step | "
        "ratio to full (wall) | ratio to full (CPU time) | peak RSS MB |")
  print("|---|---|---|---|---|---|---|---|---|")
  for size, rows in results.items():
    for regime, row in rows.items():
      print(f"| {size} | {regime} | {row['patch_trainable']:,} | "
            f"{row['images_per_sec']:.1f} | {row['ms_per_step']:.0f} | "
            f"{row['cpu_ms_per_step']:.0f} | "
            f"{bench_util.spread(row.get('ratio_to_full_rounds'))} | "
            f"{bench_util.spread(row.get('cpu_ratio_to_full_rounds'))} | "
            f"{row['peak_rss_mb']:.0f} |")
  for size, rows in results.items():
    if "cpu_ratio_to_inference" in rows.get("eval", {}):
      row = rows["eval"]
      print(f"{size} px eval vs inference: images/sec "
            f"{bench_util.spread(row['ratio_to_inference_rounds'])} (wall), "
            f"{bench_util.spread(row['cpu_ratio_to_inference_rounds'])} (CPU time)")
  if _ONEDNN.value == "both":
    _print_onednn(results)
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
