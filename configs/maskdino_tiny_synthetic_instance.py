# A tiny Mask DINO on the synthetic shapes dataset, instance segmentation
# (same wiring as maskdino_r50_coco_instance.py: 4 levels, two-stage,
# mask2box anchors, DN), for CPU runs, tests and the demo.
# Model: _base_/models/maskdino_tiny.py (ResNet-18 at 1/8 width, 32-d).
# Schedule: _base_/schedules/schedule_maskdino_tiny.py (2000 iterations).
# Data: _base_/datasets/synthetic_instance.py (generate it first:
#   python tools/misc/make_synthetic_dataset.py).
_base_ = [
    './_base_/models/maskdino_r50.py',
    './_base_/datasets/synthetic_instance.py',
    './_base_/schedules/schedule_maskdino_tiny.py',
    './_base_/tta/maskdino_instance_tta.py'
]

num_things_classes = len(_base_.metainfo.classes)
num_stuff_classes = 0

# ---------------------------------------------------------------- model
# _base_/models/maskdino_tiny.py's, with this dataset's classes.
model = dict(
    _base_.tiny_model,
    panoptic_head=dict(
        _base_.tiny_model.panoptic_head,
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    test_cfg=dict(max_per_image=20))

# Test-time augmentation (--tta): that of the R50 instance config
# (max_per_image follows test_cfg: 20), its views at this image size.
tta_img_scales = [(112, 112), (128, 128), (144, 144)]
tta_pipeline = _base_.tta_pipeline
tta_pipeline[1].transforms[0] = [
    dict(resize, scale=scale)
    for resize, scale in zip(tta_pipeline[1].transforms[0], tta_img_scales)
]
