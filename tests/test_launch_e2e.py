"""One row of each experiment type, run by the launcher on `tfds.testing.mock_data`.

The launcher runs rows as subprocesses; `mock_data` only patches the process
it is entered in, so `--python` points at a wrapper that enters it and then
runs the row's `-m` module. Rows are tiny (MobileNetV2 0.35, 32 px, random
weights or a fake SSD checkpoint written from a random model, 2 steps):
transfer table, learning-rate sweep, multi-task, multi-resolution and
SSD -> ImageNet. Then `make_tables` turns the results directory into tables.
"""

import json
import os
import sys
import textwrap

import keras
import pytest

from experiments import configs
from experiments import launch
from helpers import ckpt_writers
from k4p1 import patches
from k4p1 import report
from k4p1 import core

pytestmark = pytest.mark.slow

NUM_EXAMPLES = 6
TINY = ("--alpha=0.35", "--batch_size=4", "--train_steps=2", "--summary_every=1")
MOCK_PYTHON = textwrap.dedent("""\
    #!{python}
    import os, runpy, sys
    import tensorflow_datasets as tfds
    assert sys.argv[1] == "-m", sys.argv
    module = sys.argv[2]
    sys.argv = [module] + sys.argv[3:]
    with tfds.testing.mock_data(num_examples={num_examples}):
      runpy.run_module(module, run_name="__main__", alter_sys=True)
    """)
# (config, row id, extra flags, experiment, datasets).
CASES = {
    "transfer": ("paper_transfer_mobilenet_v2",
                 "mobilenet_v2-cifar10-224px-scale_bias+logits-lr0.045",
                 ("--image_size=32", "--weights=none"), "transfer", ("cifar10",)),
    "lr_sweep": ("paper_lr_sweep", "mobilenet_v2-cifar100-224px-logits-lr0.45",
                 ("--image_size=32", "--weights=none"), "transfer", ("cifar100",)),
    "multitask": ("paper_multitask",
                  "mobilenet_v2-mt-5tasks-224px-scale_bias+logits-frozen-lr0.045",
                  # Two of the row's five tasks keep the test short.
                  ("--image_size=32", "--weights=none",
                   "--tasks=cifar10,oxford_flowers102"), "multitask",
                  ("cifar10", "oxford_flowers102")),
    "multires": ("paper_multires",
                 "mobilenet_v2-imagenet2012-res224_192_160_128_96-scale_bias-frozen-lr0.045",
                 ("--resolutions=32,48", "--weights=none"), "multires",
                 ("imagenet2012",)),
    "ssd_to_imagenet": ("ssd_to_imagenet",
                        "mobilenet_v2-imagenet2012-224px-scale_bias+logits-lr0.045",
                        ("--image_size=32",), "transfer", ("imagenet2012",)),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
  """The wrapper interpreter and a fake SSD checkpoint."""
  root = tmp_path_factory.mktemp("launch_e2e")
  python = root / "mock_python"
  python.write_text(MOCK_PYTHON.format(python=sys.executable,
                                       num_examples=NUM_EXAMPLES))
  python.chmod(0o755)
  ssd = keras.applications.MobileNetV2(alpha=0.35, include_top=False,
                                       weights=None, input_shape=(32, 32, 3))
  prefix = ckpt_writers.write_slim_checkpoint(ssd, str(root / "ssd" / "model.ckpt"),
                                              kind="ssd_tf1")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  os.environ["PYTHONPATH"] = os.pathsep.join(
      [repo] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
  return {"root": root, "python": str(python),
          "ssd_prefix": prefix, "results": root / "runs"}


def test_one_row_of_each_experiment_runs_through_the_launcher(workspace):
  results_dir = str(workspace["results"])
  for kind, (config, row_id, flags, experiment, datasets) in CASES.items():
    row = configs.select_row(configs.load_rows(config), row_id, config)
    extra = [*TINY, *flags]
    if kind == "ssd_to_imagenet":
      extra.append(f"--weights=ssd_tf1:{workspace['ssd_prefix']}")
    outcome = launch.launch(config, results_dir, [row], extra, workspace["python"])
    log = os.path.join(results_dir, "logs", f"{row_id}.log")
    assert outcome == {row_id: "ok"}, open(log).read()[-3000:]

    results = json.loads(open(os.path.join(results_dir, row_id, "results.json")).read())
    assert results["experiment"] == experiment, kind
    assert f"--config={config}@{row_id}" in results["command"]
    resolved = results["config"]
    # The row's settings reached the runner; the pass-through flags beat them.
    assert resolved["learning_rate"] == row.get(
        "learning_rate", core.defaults.learning_rate(resolved["patch"]))
    assert resolved["alpha"] == 0.35 and results["steps"] == 2
    assert len(results["tasks"]) == (len(datasets) if kind == "multitask"
                                     else 2 if kind == "multires" else 1)
    for task in results["tasks"].values():
      assert 0.0 <= task["accuracy"] <= 1.0 and task["examples"] == NUM_EXAMPLES
    if kind == "lr_sweep":
      assert resolved["learning_rate"] == 0.45 and results["patch"] == "logits"
    if kind == "multitask":
      assert resolved["shared"] == "frozen" == row["shared"]
      assert resolved["tasks"] == list(datasets) and resolved["patch"] == str(patches.PatchSpec.parse(row["patch"]))
    if kind == "multires":
      assert sorted(results["tasks"]) == ["imagenet2012@32", "imagenet2012@48"]
      # PreciseBN: each resolution's own 52 S/B layers, each at its own size.
      assert results["bn_statistics"]["method"] == "precise_bn"
      assert results["bn_statistics"]["layers"] == 2 * 52
    if kind == "ssd_to_imagenet":
      assert resolved["weights"].startswith("ssd_tf1:")
      assert resolved["dataset"] == "imagenet2012"
      assert results["tasks"]["imagenet2012"]["num_classes"] == 1000

    # A second launch finds the row finished and runs nothing.
    assert launch.launch(config, results_dir, [row], extra,
                         workspace["python"]) == {row_id: "done"}

  written = report.write_report(results_dir, workspace["root"] / "report", ["md"])
  tables = written[0].read_text()
  for title in ("Transfer learning: mobilenet_v2",
                "SSD feature extractor -> ImageNet classifier",
                "Multi-task learning: mobilenet_v2", "Multi-resolution"):
    assert title in tables, title
