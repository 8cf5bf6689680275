# Cityscapes semantic (official maskdino_R50_bs16_90k_steplr.yaml): the same
# solver, 90k iterations at batch 16, lr x0.1 at 80k and 87k.
_base_ = './schedule_maskdino_50e.py'
max_iters = 90000
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[80000, 87000],
        gamma=0.1)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
