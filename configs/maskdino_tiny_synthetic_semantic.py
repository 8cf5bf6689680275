# A tiny Mask DINO on the synthetic shapes dataset, semantic segmentation
# (same wiring as maskdino_r50_ade20k_semantic.py: 3 levels, learned queries
# and anchors, softmax CE with a no-object class), all 5 classes as "stuff",
# ADE20K layout (label 0 ignored), evaluated with mIoU.
# Model: _base_/models/maskdino_tiny.py (ResNet-18 at 1/8 width, 32-d).
# Data: generate it first (default root data/synthetic/):
#   python tools/misc/make_synthetic_dataset.py
# Another root (ROOT/ade/ADEChallengeData2016/): override
# train/val/test_dataloader.dataset.data_root with --cfg-options.
_base_ = [
    './maskdino_r50_ade20k_semantic.py', './_base_/models/maskdino_tiny.py'
]

data_root = 'data/synthetic/ade/ADEChallengeData2016/'
metainfo = dict(
    classes=('disc', 'square', 'triangle', 'sky', 'ground'),
    palette=[(205, 45, 40), (40, 165, 60), (235, 195, 35), (150, 190, 240),
             (125, 90, 55)])
num_things_classes = 0
num_stuff_classes = 5
num_classes = num_things_classes + num_stuff_classes
crop_size = (128, 128)  # (h, w)
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
                num_points={{_base_.tiny_num_points}}),
            loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]))),
    panoptic_fusion_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes))

# ----------------------------------------------------------------- data
# The official semantic pipeline at 128 px with a milder scale range:
# short side in {102, ..., 153} (0.8-1.2 x 128), random 128x128 crop,
# photometric distortion, flip, pad to the 128x128 canvas.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='LoadAnnotations',
        with_bbox=False,
        with_mask=False,
        with_seg=True,
        reduce_zero_label=True),
    dict(
        type='RandomChoiceResize',
        scales=[(4 * crop_size[0], int(crop_size[0] * 0.1 * k))
                for k in range(8, 13)],
        keep_ratio=True),
    dict(
        type='SemSegRandomCrop',
        crop_size=crop_size,
        cat_max_ratio=1.0,
        ignore_index=255),
    dict(type='mmseg.PhotoMetricDistortion'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='Pad',
        size=(crop_size[1], crop_size[0]),
        pad_val=dict(img=(128, 128, 128), seg=255)),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize', scale=(4 * crop_size[0], crop_size[0]),
        keep_ratio=True),
    dict(
        type='LoadAnnotations',
        with_bbox=False,
        with_mask=False,
        with_seg=True,
        reduce_zero_label=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(_delete_=True, type='MaskDINOSemSegMetric', iou_metrics=['mIoU'])
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
