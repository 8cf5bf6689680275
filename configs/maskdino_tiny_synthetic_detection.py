# Box-only tiny Mask DINO (boxes, no masks) on the synthetic shapes dataset:
# maskdino_tiny_synthetic_instance.py trained and evaluated on boxes alone,
# the like-for-like peer of DINO (configs/benchmarks/dino_tiny_synthetic.py;
# docs/learning_benchmark.md). The template for datasets without masks.
# - MaskDINOHead(with_mask=False): no mask head, no mask features, no mask
#   losses or mask logits in training or inference; pred_instances hold
#   bboxes, scores (the class scores) and labels;
# - what a box-only head requires to be consistent: anchors from the
#   encoder's boxes (initialize_box_type='no'), no mask or dice loss
#   (None), matching on the class and box costs only;
# - the dataset's masks are not loaded: boxes come from the annotations
#   (clipped by the crop); box AP only.
_base_ = './maskdino_tiny_synthetic_instance.py'

# ---------------------------------------------------------------- model
model = dict(
    panoptic_head=dict(
        with_mask=False,
        initialize_box_type='no',
        criterion=dict(
            loss_mask=None,
            loss_dice=None,
            assigner=dict(match_costs=[
                dict(type='FocalLossCost', weight=4.0, eps=1e-8)
            ]))))

# ----------------------------------------------------------------- data
# The instance config's pipelines without masks.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(**_base_.synthetic_lsj_augment, boxes_from_masks=False),
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
