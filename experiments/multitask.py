r"""Multi-task, sequential and multi-resolution learning with per-task patches.

  # K tasks on one shared base, one patch and one head per task:
  python -m experiments.multitask --model=mobilenet_v2 --weights=imagenet \
      --tasks=cifar10,cifar100,oxford_flowers102 --patch=scale_bias+logits \
      --workdir=runs/mt
  # Add a task to that run; the earlier tasks' outputs stay bit-identical:
  python -m experiments.multitask --sequential --tasks=cars196 --workdir=runs/mt
  # One dataset at several sizes, one S/B patch per size, one shared head:
  python -m experiments.multitask --dataset=cifar100 \
      --resolutions=224,192,160,128,96 --patch=scale_bias --workdir=runs/mr

The flags are `experiments.transfer`'s (every field of `k4p1.train.RunConfig`);
`--batch_size` is each task's batch. `--shared=trained` also trains the
shared base on every task; `--task_sampling=round_robin|proportional` trains
one task per step instead of all. The work is done by `k4p1.train.run`.
"""

from absl import app
from absl import flags

from experiments import config_flags

flags.mark_flag_as_required("workdir")


def main(argv):
  config_flags.main(argv, "experiments.multitask")


if __name__ == "__main__":
  app.run(main)
