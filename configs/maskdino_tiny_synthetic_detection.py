# Detection-only tiny Mask DINO (boxes, no masks) on the synthetic shapes
# dataset: maskdino_tiny_synthetic_instance.py trained and evaluated on
# boxes alone, the like-for-like peer of DINO (configs/benchmarks/
# dino_tiny_synthetic.py; docs/learning_benchmark.md):
# - no mask losses (weights 0), matching on class and box costs only,
#   anchors from the encoder's boxes instead of its masks (mask2box), scores
#   from the classes alone (focus_on_box) -- the values of
#   projects/mask_dino/benchmarks/ablation.py's DETECTION_ONLY, which a test
#   keeps equal to these;
# - the dataset's masks are not loaded: boxes come from the annotations
#   (clipped by the crop); BoxesAsMasks gives each box a placeholder mask
#   because MaskDINOHead requires target masks (they reach no loss);
# - box AP only.
# The mask branch still runs (training: every decoder layer; inference: the
# last one): MaskDINOHead has no switch to skip it yet.
_base_ = './maskdino_tiny_synthetic_instance.py'
custom_imports = dict(
    imports=[
        *_base_.custom_imports.imports,
        'projects.mask_dino.benchmarks.transforms'
    ],
    allow_failed_imports=False)

# ---------------------------------------------------------------- model
model = dict(
    panoptic_head=dict(
        initialize_box_type='no',
        criterion=dict(
            loss_mask=dict(loss_weight=0.0),
            loss_dice=dict(loss_weight=0.0),
            assigner=dict(match_costs=[
                dict(type='FocalLossCost', weight=4.0, eps=1e-8)
            ]))),
    test_cfg=dict(focus_on_box=True))

# ----------------------------------------------------------------- data
# The instance config's pipelines without masks.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomResize',
        scale={{_base_.image_size}},
        ratio_range=(0.8, 1.25),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_size={{_base_.image_size}},
        crop_type='absolute',
        allow_negative_crop=True),
    dict(
        type='Pad',
        size={{_base_.image_size}},
        pad_val=dict(img=(128, 128, 128), seg=255)),
    dict(
        type='FilterAnnotations',
        min_gt_bbox_wh=(1e-5, 1e-5),
        keep_empty=False),
    dict(type='BoxesAsMasks'),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={{_base_.image_size}}, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator

# The instance TTA votes masks: not for this config.
tta_model = None
tta_pipeline = None
