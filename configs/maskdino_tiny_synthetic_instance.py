# A tiny Mask DINO on the synthetic shapes dataset, instance segmentation
# (same wiring as maskdino_r50_coco_instance.py: 4 levels, two-stage,
# mask2box anchors, DN), for CPU runs, tests and the demo.
# Model: _base_/models/maskdino_tiny.py (ResNet-18 at 1/8 width, 32-d).
# Data: generate it first (default root data/synthetic/):
#   python tools/misc/make_synthetic_dataset.py
# Another root (ROOT/coco/...): override train/val/test_dataloader
# .dataset.data_root and val/test_evaluator.ann_file with --cfg-options.
_base_ = [
    './maskdino_r50_coco_instance.py', './_base_/models/maskdino_tiny.py'
]

data_root = 'data/synthetic/coco/'
metainfo = dict(
    classes=('disc', 'square', 'triangle'),
    palette=[(205, 45, 40), (40, 165, 60), (235, 195, 35)])
num_things_classes = 3
num_stuff_classes = 0
num_classes = num_things_classes + num_stuff_classes
image_size = (128, 128)
max_iters = {{_base_.tiny_max_iters}}
val_interval = {{_base_.tiny_val_interval}}

# ---------------------------------------------------------------- model
model = dict(
    backbone={{_base_.tiny_backbone}},
    panoptic_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        num_queries={{_base_.tiny_num_queries}},
        embed_dims={{_base_.tiny_embed_dims}},
        dn_cfg={{_base_.tiny_dn_cfg}},
        pixel_decoder={{_base_.tiny_pixel_decoder}},
        decoder={{_base_.tiny_decoder}},
        criterion=dict(
            num_classes=num_classes,
            num_things_classes=num_things_classes,
            num_points={{_base_.tiny_num_points}},
            assigner=dict(
                num_things_classes=num_things_classes,
                num_points={{_base_.tiny_num_points}}))),
    panoptic_fusion_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    test_cfg=dict(max_per_image=20))

# ----------------------------------------------------------------- data
# The official LSJ pipeline at 128 px with a milder scale range (0.8-1.25):
# flip, resize, crop, pad to the 128x128 canvas, boxes recomputed from the
# cropped masks, crowd instances kept out of the targets.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
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
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
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

# Test-time augmentation (--tta): tta_model of the R50 instance config
# (max_per_image follows test_cfg: 20), its views at this scale.
tta_img_scales = [(112, 112), (128, 128), (144, 144)]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale=scale, keep_ratio=True)
                for scale in tta_img_scales
            ],
            [
                dict(type='RandomFlip', prob=1.0),
                dict(type='RandomFlip', prob=0.0)
            ],
            [dict(type='LoadAnnotations', with_bbox=True, with_mask=True)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape',
                               'img_shape', 'scale_factor', 'flip',
                               'flip_direction'))
            ]
        ])
]

val_evaluator = dict(
    _delete_=True,
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False)
test_evaluator = val_evaluator

# ------------------------------------------------------------- schedule
# _base_/models/maskdino_tiny.py's (fp32, 10x the official lr, warm-up,
# x0.1 for the last 20%).
optim_wrapper = {{_base_.tiny_optim_wrapper}}
param_scheduler = {{_base_.tiny_param_scheduler}}
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=val_interval, max_keep_ckpts=1))
log_processor = dict(window_size=20)
