r"""Transfer learning with a model patch: one model, one dataset, one patch.

  python -m experiments.transfer --model=mobilenet_v2 --weights=imagenet \
      --dataset=cifar100 --patch=scale_bias+logits --workdir=runs/cifar100_sb

Defaults are the paper's recipe; every flag is a field of
`k4p1.train.RunConfig` (`--helpfull` lists them with their help).
`--config=<name>` starts from `experiments/configs/<name>.py`; flags given on
the command line override it. Rerunning a command with the same `--workdir`
resumes from its last checkpoint. The work is done by `k4p1.train.run`, the
runner of every kind of run (`experiments.multitask` is the same entry point
with the multi-task flags in its documentation).
"""

from absl import app
from absl import flags

from experiments import config_flags

flags.mark_flag_as_required("workdir")


def main(argv):
  config_flags.main(argv, "experiments.transfer")


if __name__ == "__main__":
  app.run(main)
