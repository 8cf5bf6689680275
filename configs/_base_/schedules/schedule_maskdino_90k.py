_base_ = './schedule_maskdino_50e.py'
# Cityscapes semantic: 90k iterations, lr x0.1 at 80k and 87k.
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
