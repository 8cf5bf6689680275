# The synthetic shapes dataset, panoptic segmentation (COCO panoptic layout:
# 3 thing and 2 stuff classes, 128x128 images), for the tiny CPU configs,
# tests and the demo. Generate it first (default root data/synthetic/):
#   python tools/misc/make_synthetic_dataset.py
# Another root (ROOT/coco/...): --cfg-options data_root=ROOT/coco/ (with
# tools/train.py, tools/test.py), or override train/val/test_dataloader
# .dataset.data_root and the evaluators' ann_file / seg_prefix.
_base_ = './coco_panoptic_lsj.py'

data_root = 'data/synthetic/coco/'
metainfo = dict(
    classes=('disc', 'square', 'triangle', 'sky', 'ground'),
    thing_classes=('disc', 'square', 'triangle'),
    stuff_classes=('sky', 'ground'),
    palette=[(205, 45, 40), (40, 165, 60), (235, 195, 35), (150, 190, 240),
             (125, 90, 55)])
image_size = (128, 128)

# The official LSJ pipeline at 128 px with a milder scale range (0.8-1.25):
# flip, resize, crop, pad to the 128x128 canvas; crowd segments are not
# targets.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='LoadPanopticAnnotations',
        with_bbox=True,
        with_mask=True,
        with_seg=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomResize',
        scale=image_size,
        ratio_range=(0.8, 1.25),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_size=image_size,
        crop_type='absolute',
        recompute_bbox=True,
        allow_negative_crop=True),
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
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadPanopticAnnotations'),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
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
