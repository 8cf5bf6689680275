# Cityscapes semantic (official maskdino_R50_bs16_90k_steplr.yaml): the same
# solver, 90k iterations at batch 16, lr x0.1 at 80k and 87k.
_base_ = './schedule_maskdino_50e.py'
max_iters = 90000
param_scheduler = [
    dict(_base_.param_scheduler[0], end=max_iters, milestones=[80000, 87000])
]
train_cfg = dict(max_iters=max_iters)
