# A tiny Mask DINO on the synthetic shapes dataset, semantic segmentation
# (same wiring as maskdino_r50_ade20k_semantic.py: 3 levels, learned queries
# and anchors, softmax CE with a no-object class), all 5 classes as "stuff",
# evaluated with mIoU.
# Model: _base_/models/maskdino_tiny.py (ResNet-18 at 1/8 width, 32-d).
# Data: _base_/datasets/synthetic_semantic.py (generate it first:
#   python tools/misc/make_synthetic_dataset.py).
_base_ = [
    './_base_/models/maskdino_r50_semantic.py',
    './_base_/datasets/synthetic_semantic.py',
    './_base_/schedules/schedule_maskdino_160k.py',
    './_base_/default_runtime.py', './_base_/models/maskdino_tiny.py'
]

num_things_classes = 0
num_stuff_classes = len(_base_.metainfo.classes)
num_classes = num_things_classes + num_stuff_classes
max_iters = {{_base_.tiny_max_iters}}
val_interval = {{_base_.tiny_val_interval}}

# ---------------------------------------------------------------- model
# _base_/models/maskdino_tiny.py's, with this dataset's classes.
model = dict(
    _base_.tiny_model,
    panoptic_head=dict(
        _base_.tiny_model.panoptic_head,
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        criterion=dict(
            _base_.tiny_model.panoptic_head.criterion,
            loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]))))

# ------------------------------------------------------------- schedule
# _base_/models/maskdino_tiny.py's (fp32, 10x the official lr, warm-up,
# x0.1 for the last 20%).
optim_wrapper = {{_base_.tiny_optim_wrapper}}
param_scheduler = {{_base_.tiny_param_scheduler}}
train_cfg = {{_base_.tiny_train_cfg}}
default_hooks = {{_base_.tiny_default_hooks}}
log_processor = {{_base_.tiny_log_processor}}
