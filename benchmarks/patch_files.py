r"""Patch files, old format vs new: bytes on disk, read and load times.

For each patch kind on MobileNetV2 (random weights; the patch's own values
perturbed with N(0, 0.01) noise, as training leaves them, since untrained
gammas of 1 and betas of 0 would flatter the deflated format), the same patch
written as
  v1  k4p1's first format: a zip of spec.json + weights.npz (deflated), as
      `save_patch` wrote until 2026-12-06 (rebuilt here from its members);
  v2  safetensors (`save_patch` now),
and timed: `read_patch_file` (decode and check, no model) and `load_patch`
(onto the base: injection, fingerprint check, assignment), median of
`--repeats` calls after one untimed call.

  python benchmarks/patch_files.py                        # 224 px, 10 classes
  python benchmarks/patch_files.py --image_size=96 --output=/tmp/pf.json
"""

import io
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile

from absl import app
from absl import flags
import numpy as np

import bench_util
from k4p1 import atomic

SPECS = ("logits", "scale_bias+logits", "depthwise+logits",
         "scale_bias+depthwise+logits", "full")
_SPECS = flags.DEFINE_list("specs", list(SPECS), "Patch specs.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Input size (px).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 10, "Classes of the head.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per measurement.")
_OUTPUT = flags.DEFINE_string("output", "patch_files.json", "JSON result path.")


def _v1_bytes(path: str) -> bytes:
  """The first format's bytes of the patch saved at `path` (same content)."""
  from k4p1.patches import io as patch_io  # pylint: disable=g-import-not-at-top
  spec, arrays = patch_io.read_patch_file(path)
  spec = dict(spec, format_version=1)
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for name, payload in (("spec.json", json.dumps(spec, indent=1,
                                                   sort_keys=True).encode()),
                          ("weights.npz", patch_io.npz_bytes(arrays))):
      info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
      info.compress_type = zipfile.ZIP_DEFLATED
      z.writestr(info, payload)
  return buffer.getvalue()


def _median_seconds(fn) -> float:
  fn()
  times = []
  for _ in range(_REPEATS.value):
    began = time.perf_counter()
    fn()
    times.append(time.perf_counter() - began)
  return statistics.median(times)


def measure(spec: str, base, directory: str) -> dict:
  """Sizes and times of one patch kind in both formats."""
  from k4p1 import patches  # pylint: disable=g-import-not-at-top
  task = patches.apply_patch(base, spec, task="t", num_classes=_NUM_CLASSES.value)
  # Trained-like values: the initial ones (gammas 1, betas 0, ...) deflate far
  # better than any trained patch would.
  rng = np.random.default_rng(0)
  for variable in patches.patch_variables(task):
    variable.assign(variable.numpy() + rng.normal(
        0, 0.01, variable.shape).astype(variable.dtype))
  files = {"v2": os.path.join(directory, f"{spec}.safetensors"),
           "v1": os.path.join(directory, f"{spec}.k4p1")}
  patches.save_patch(task, files["v2"])
  with open(files["v1"], "wb") as f:
    f.write(_v1_bytes(files["v2"]))
  row = {"spec": spec,
         "stored_params": patches.count_params(task)["patch_stored"]}
  for version, path in files.items():
    row[f"{version}_bytes"] = os.path.getsize(path)
    row[f"{version}_read_ms"] = 1000 * _median_seconds(
        lambda p=path: patches.read_patch_file(p))
    row[f"{version}_load_ms"] = 1000 * _median_seconds(
        lambda p=path: patches.load_patch(base, p))
  return row


def main(argv):
  del argv
  from k4p1 import models  # pylint: disable=g-import-not-at-top
  base = models.build_backbone("mobilenet_v2", _IMAGE_SIZE.value, weights=None)
  with tempfile.TemporaryDirectory() as directory:
    rows = [measure(spec, base, directory) for spec in _SPECS.value]
  print(f"CPU: {bench_util.describe_cpu(bench_util.cpu_description())}; "
        f"load {os.getloadavg()[0]:.2f}; MobileNetV2 1.0 at "
        f"{_IMAGE_SIZE.value} px, {_NUM_CLASSES.value} classes; median of "
        f"{_REPEATS.value}")
  print("| patch | stored params | v1 zip bytes | v2 safetensors bytes | "
        "read ms v1 / v2 | load ms v1 / v2 |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['spec']} | {r['stored_params']:,} | {r['v1_bytes']:,} | "
          f"{r['v2_bytes']:,} | {r['v1_read_ms']:.1f} / {r['v2_read_ms']:.1f} | "
          f"{r['v1_load_ms']:.0f} / {r['v2_load_ms']:.0f} |")
  atomic.write_text_atomic(_OUTPUT.value, json.dumps({
      "benchmark": "patch_files",
      "command": " ".join(["python", "benchmarks/patch_files.py"] + sys.argv[1:]),
      "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
      "cpu": bench_util.cpu_description(), "load_average": os.getloadavg(),
      "image_size": _IMAGE_SIZE.value, "num_classes": _NUM_CLASSES.value,
      "repeats": _REPEATS.value, "results": rows}, indent=2))
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
