"""Training: one config, one runner for every kind of run, and their parts.

```python
from k4p1 import train
results = train.run(train.RunConfig(
    workdir="runs/cifar100_sb", dataset="cifar100", patch="scale_bias+logits"))
```
"""

from k4p1.train.checkpointing import RunCheckpoint
from k4p1.train.config import BN_STATS
from k4p1.train.config import DEFAULT_TRAIN_EPOCHS
from k4p1.train.config import EXPERIMENTS
from k4p1.train.config import IDENTITY_FIELDS
from k4p1.train.config import merge_overrides
from k4p1.train.config import RunConfig
from k4p1.train.config import SHARED
from k4p1.train.config import TASK_SAMPLING
from k4p1.train.loop import cross_entropy
from k4p1.train.loop import make_train_step
from k4p1.train.loop import run_training_loop
from k4p1.train.loop import TrainTask
from k4p1.train.loop import unique_trainable_variables
from k4p1.train.optimizers import build_learning_rate_schedule
from k4p1.train.optimizers import build_optimizer
from k4p1.train.optimizers import is_kernel
from k4p1.train.optimizers import OPTIMIZERS
from k4p1.train.optimizers import weight_decay_loss
from k4p1.train.plan import check_config
from k4p1.train.plan import resolve
from k4p1.train.plan import RunPlan
from k4p1.train.plan import TaskPlan
from k4p1.train.precise_bn import PreciseBatchNorm
from k4p1.train.precise_bn_callback import PreciseBN
from k4p1.train.precise_bn import update_bn_stats
from k4p1.train.runner import pretrain_backbone
from k4p1.train.runner import run
from k4p1.train.state import set_bn_momentum
from k4p1.train.steps import AllTasksStep
from k4p1.train.steps import sample_task
from k4p1.train.steps import SampledTaskStep
from k4p1.train.strategy import build_strategy
from k4p1.train.strategy import ClusterConfigError
from k4p1.train.strategy import is_chief
from k4p1.train.strategy import STRATEGIES
from k4p1.train.summaries import SummaryWriter
from k4p1.workdir import BACKBONE_FILE
from k4p1.workdir import WorkdirMismatchError
from k4p1.workdir_lock import WorkdirLockedError
from k4p1.workdir import write_json_atomic
