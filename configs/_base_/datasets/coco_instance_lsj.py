# COCO instance segmentation with the official large-scale jitter (mapper
# `coco_instance_lsj`, maskdino/data/dataset_mappers/
# coco_instance_new_baseline_dataset_mapper.py): horizontal flip ->
# ResizeScale 0.1-2.0 of 1024x1024 (aspect kept) -> FixedSizeCrop 1024x1024,
# padded with 128 -> crowd instances dropped, boxes recomputed from the
# cropped masks, empty instances dropped; an image left without instances
# is still trained on (all queries are no-object), as official.
# Test: short side 800, long side <= 1333 (detectron2 defaults).
#
# Another copy of COCO (ROOT/{train2017,val2017,annotations}):
#   --cfg-options data_root=ROOT
# (tools/train.py, tools/test.py, tools/demo/image_demo.py) moves every
# dataloader and evaluator path under it (docs/datasets.md).
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
backend_args = None
image_size = (1024, 1024)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    # polygons and RLEs are rasterised here (poly2mask), so boxes below are
    # the tight boxes of the cropped bitmaps
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomResize',
        scale=image_size,
        ratio_range=(0.1, 2.0),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_size=image_size,
        crop_type='absolute',
        recompute_bbox=True,
        allow_negative_crop=True),
    # Pad inside the pipeline (not in the data preprocessor) so that
    # img_shape is the 1024x1024 canvas the official code normalises the
    # GT boxes by; raw pad value 128 as detectron2's FixedSizeCrop.
    dict(
        type='Pad',
        size=image_size,
        pad_val=dict(img=(128, 128, 128), masks=0, seg=255)),
    dict(
        type='FilterAnnotations',
        min_gt_bbox_wh=(1e-5, 1e-5),
        by_mask=True,
        keep_empty=False),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

# 2 images per GPU; the official total batch is 16 (8 GPUs x 2).
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        # official FILTER_EMPTY_ANNOTATIONS: drop images without annotations
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
