# The synthetic shapes dataset, panoptic segmentation (COCO panoptic layout:
# 3 thing and 2 stuff classes, 128x128 images), for the tiny CPU configs,
# tests and the demo. Generate it first (default root data/synthetic/):
#   python tools/misc/make_synthetic_dataset.py
# Another root (ROOT/coco/...): --cfg-options data_root=ROOT/coco/ (with
# tools/train.py, tools/test.py), or override train/val/test_dataloader
# .dataset.data_root and the evaluators' ann_file / seg_prefix.
_base_ = ['./coco_panoptic_lsj.py', './synthetic_common.py']

data_root = 'data/synthetic/coco/'
metainfo = dict(
    classes=('disc', 'square', 'triangle', 'sky', 'ground'),
    thing_classes=('disc', 'square', 'triangle'),
    stuff_classes=('sky', 'ground'),
    palette=[(205, 45, 40), (40, 165, 60), (235, 195, 35), (150, 190, 240),
             (125, 90, 55)])
image_size = _base_.synthetic_image_size

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='LoadPanopticAnnotations',
        with_bbox=True,
        with_mask=True,
        with_seg=True),
    *_base_.synthetic_lsj_augment,
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    _base_.synthetic_test_resize,
    dict(type='LoadPanopticAnnotations'),
    _base_.synthetic_test_pack
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(
            img='train2017/', seg='annotations/panoptic_train2017/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = [
    dict(
        type='MaskDINOCocoPanopticMetric',
        ann_file=data_root + 'annotations/panoptic_val2017.json',
        seg_prefix=data_root + 'annotations/panoptic_val2017/',
        nproc=2),
    dict(
        type='CocoMetric',
        ann_file=data_root + 'annotations/instances_val2017.json',
        metric=['bbox', 'segm']),
    dict(type='MaskDINOSemSegMetric', iou_metrics=['mIoU'])
]
test_evaluator = val_evaluator
