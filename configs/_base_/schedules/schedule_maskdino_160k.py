# ADE20K semantic (official maskdino_R50_bs16_160k_steplr.yaml): the same
# solver, 160k iterations at batch 16, lr x0.1 at 135k and 150k.
_base_ = './schedule_maskdino_50e.py'
max_iters = 160000
param_scheduler = [
    dict(
        _base_.param_scheduler[0],
        end=max_iters,
        milestones=[135000, 150000])
]
train_cfg = dict(max_iters=max_iters)
