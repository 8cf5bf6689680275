# Schedule and logging of the tiny synthetic configs
# (maskdino_tiny_synthetic_*.py), from _base_/models/maskdino_tiny.py (fp32,
# 10x the official lr, warm-up, x0.1 for the last 20%; 2000 iterations,
# validation and one checkpoint every 500, logs every 20) merged into the
# official AdamW recipe (weight decay, clipping and the no-decay keys stay)
# and runtime. The learning-benchmark peers (configs/benchmarks/) take the
# same `tiny_*` settings into their MMDetection recipes.
_base_ = [
    './schedule_maskdino_50e.py', '../default_runtime.py',
    '../models/maskdino_tiny.py'
]
max_iters = {{_base_.tiny_max_iters}}
val_interval = {{_base_.tiny_val_interval}}
optim_wrapper = {{_base_.tiny_optim_wrapper}}
param_scheduler = {{_base_.tiny_param_scheduler}}
train_cfg = {{_base_.tiny_train_cfg}}
default_hooks = {{_base_.tiny_default_hooks}}
log_processor = {{_base_.tiny_log_processor}}
