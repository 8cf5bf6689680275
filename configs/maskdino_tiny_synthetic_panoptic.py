# A tiny Mask DINO on the synthetic shapes dataset, panoptic segmentation
# (same wiring as maskdino_r50_coco_panoptic.py: 4 levels, two-stage, box
# init 'no', boxes for every segment), evaluated with PQ, instance AP of the
# things and mIoU, as the official panoptic results table.
# Model: _base_/models/maskdino_tiny.py (ResNet-18 at 1/8 width, 32-d).
# Schedule: _base_/schedules/schedule_maskdino_tiny.py (2000 iterations).
# Data: _base_/datasets/synthetic_panoptic.py (generate it first:
#   python tools/misc/make_synthetic_dataset.py).
_base_ = [
    './_base_/models/maskdino_r50_panoptic.py',
    './_base_/datasets/synthetic_panoptic.py',
    './_base_/schedules/schedule_maskdino_tiny.py'
]

num_things_classes = len(_base_.metainfo.thing_classes)
num_stuff_classes = len(_base_.metainfo.stuff_classes)

# ---------------------------------------------------------------- model
# _base_/models/maskdino_tiny.py's, with this dataset's classes.
model = dict(
    _base_.tiny_model,
    panoptic_head=dict(
        _base_.tiny_model.panoptic_head,
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    test_cfg=dict(max_per_image=20))
