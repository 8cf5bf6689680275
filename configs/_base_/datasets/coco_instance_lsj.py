# COCO instance segmentation with the official large-scale jitter (mapper
# `coco_instance_lsj`, coco_lsj_augment.py); crowd instances dropped; an
# image left without instances is still trained on (all queries are
# no-object), as official.
# Test: short side 800, long side <= 1333 (detectron2 defaults).
#
# Another copy of COCO (ROOT/{train2017,val2017,annotations}):
#   --cfg-options data_root=ROOT
# (tools/train.py, tools/test.py, tools/demo/image_demo.py) moves every
# dataloader and evaluator path under it (docs/datasets.md).
_base_ = './coco_common.py'

dataset_type = 'CocoDataset'
backend_args = _base_.backend_args

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    # polygons and RLEs are rasterised here (poly2mask), so boxes below are
    # the tight boxes of the cropped bitmaps
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    _base_.coco_lsj_augment,
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    _base_.coco_test_resize,
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    _base_.coco_test_pack
]

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        # official FILTER_EMPTY_ANNOTATIONS: drop images without annotations
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=_base_.data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
