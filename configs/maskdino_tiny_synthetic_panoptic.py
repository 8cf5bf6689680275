# A tiny Mask DINO on the synthetic shapes dataset, panoptic segmentation
# (same wiring as maskdino_r50_coco_panoptic.py: 4 levels, two-stage, box
# init 'no', boxes for every segment), evaluated with PQ, instance AP of the
# things and mIoU, as the official panoptic results table.
# Model: _base_/models/maskdino_tiny.py (ResNet-18 at 1/8 width, 32-d).
# Data: _base_/datasets/synthetic_panoptic.py (generate it first:
#   python tools/misc/make_synthetic_dataset.py).
_base_ = [
    './_base_/models/maskdino_r50_panoptic.py',
    './_base_/datasets/synthetic_panoptic.py',
    './_base_/schedules/schedule_maskdino_50e.py',
    './_base_/default_runtime.py', './_base_/models/maskdino_tiny.py'
]

num_things_classes = len(_base_.metainfo.thing_classes)
num_stuff_classes = len(_base_.metainfo.stuff_classes)
max_iters = {{_base_.tiny_max_iters}}
val_interval = {{_base_.tiny_val_interval}}

# ---------------------------------------------------------------- model
# _base_/models/maskdino_tiny.py's, with this dataset's classes.
model = dict(
    _base_.tiny_model,
    panoptic_head=dict(
        _base_.tiny_model.panoptic_head,
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    test_cfg=dict(max_per_image=20))

# ------------------------------------------------------------- schedule
# _base_/models/maskdino_tiny.py's (fp32, 10x the official lr, warm-up,
# x0.1 for the last 20%).
optim_wrapper = {{_base_.tiny_optim_wrapper}}
param_scheduler = {{_base_.tiny_param_scheduler}}
train_cfg = {{_base_.tiny_train_cfg}}
default_hooks = {{_base_.tiny_default_hooks}}
log_processor = {{_base_.tiny_log_processor}}
