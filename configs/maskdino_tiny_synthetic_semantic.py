# A tiny Mask DINO on the synthetic shapes dataset, semantic segmentation
# (same wiring as maskdino_r50_ade20k_semantic.py: 3 levels, learned queries
# and anchors, softmax CE with a no-object class), all 5 classes as "stuff",
# evaluated with mIoU.
# Model: _base_/models/maskdino_tiny.py (ResNet-18 at 1/8 width, 32-d).
# Schedule: _base_/schedules/schedule_maskdino_tiny.py (2000 iterations).
# Data: _base_/datasets/synthetic_semantic.py (generate it first:
#   python tools/misc/make_synthetic_dataset.py).
_base_ = [
    './_base_/models/maskdino_r50_semantic.py',
    './_base_/datasets/synthetic_semantic.py',
    './_base_/schedules/schedule_maskdino_tiny.py'
]

num_things_classes = 0
num_stuff_classes = len(_base_.metainfo.classes)
num_classes = num_things_classes + num_stuff_classes

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
