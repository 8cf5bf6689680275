# The synthetic shapes dataset, instance segmentation (COCO layout: 3 thing
# classes, 128x128 images), for the tiny CPU configs, tests and the demo.
# Generate it first (default root data/synthetic/):
#   python tools/misc/make_synthetic_dataset.py
# Another root (ROOT/coco/...): --cfg-options data_root=ROOT/coco/ (with
# tools/train.py, tools/test.py), or override train/val/test_dataloader
# .dataset.data_root and val/test_evaluator.ann_file.
_base_ = ['./coco_instance_lsj.py', './synthetic_common.py']

data_root = 'data/synthetic/coco/'
metainfo = dict(
    classes=('disc', 'square', 'triangle'),
    palette=[(205, 45, 40), (40, 165, 60), (235, 195, 35)])
image_size = _base_.synthetic_image_size

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    *_base_.synthetic_lsj_augment,
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    _base_.synthetic_test_resize,
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    _base_.synthetic_test_pack
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(
    _delete_=True,
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False)
test_evaluator = val_evaluator
