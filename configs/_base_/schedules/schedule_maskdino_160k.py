_base_ = './schedule_maskdino_50e.py'
# ADE20K semantic: 160k iterations, lr x0.1 at 135k and 150k.
max_iters = 160000
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[135000, 150000],
        gamma=0.1)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
