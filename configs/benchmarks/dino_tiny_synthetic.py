# Peer for the learning benchmark (tools/benchmarks/learn_synthetic.py):
# MMDetection's own DINO (dino-4scale_r50_8xb2-12e_coco) shrunk exactly like
# configs/maskdino_tiny_synthetic_instance.py and trained on the same
# synthetic things (instance json, 3 classes) with the same pipeline, image
# size (128), batch (2), iterations and lr schedule:
# - backbone: _base_/models/maskdino_tiny.py's ResNet-18 at 1/8 width with GN,
#   from scratch; res3-res5 + one extra stride-2 level (4 levels, as Mask
#   DINO's pixel decoder);
# - transformer: 32-d, 4 heads, FFN 64, 1 encoder layer, 3 decoder layers,
#   20 queries, 10 denoising queries;
# - optimiser: DINO's own AdamW recipe (weight decay 1e-4, clip 0.1) with the
#   tiny Mask DINO's lr 1e-3 on every parameter (backbone too), warm-up and
#   x0.1 for the last 20%.
# Output: boxes only (box AP).
# MMDetection's DINO decoder only runs at 256-d (its reference-point sine
# embedding is always 512 channels); AnyWidthDINO
# (projects/mask_dino/benchmarks/peers.py, loaded below) sizes it to the
# model (2 x embed_dims, as Mask DINO's decoder) and changes nothing else.
# Train alone: python tools/train.py <this config>
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    '../_base_/models/maskdino_tiny.py',
    '../_base_/datasets/synthetic_common.py'
]
custom_imports = dict(
    imports=['projects.mask_dino.benchmarks.peers'],
    allow_failed_imports=False)

data_root = _base_.synthetic_coco_root
metainfo = _base_.synthetic_instance_metainfo
num_classes = 3
image_size = _base_.synthetic_image_size
max_iters = {{_base_.tiny_max_iters}}
val_interval = {{_base_.tiny_val_interval}}
embed_dims = _base_.tiny_embed_dims

# ---------------------------------------------------------------- model
model = dict(
    type='AnyWidthDINO',
    num_queries={{_base_.tiny_num_queries}},
    data_preprocessor=dict(pad_size_divisor=32),
    # _base_/models/maskdino_tiny.py's tiny_backbone, written out because
    # DINO's frozen_stages=1 must become -1 as well (a `{{_base_.*}}`
    # reference cannot be combined with other keys); learn_synthetic.py
    # checks that the two stay equal.
    backbone=dict(
        depth=18,
        base_channels=8,
        frozen_stages=-1,
        norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(
        in_channels=[16, 32, 64],
        out_channels=embed_dims,
        norm_cfg=dict(type='GN', num_groups=8)),
    encoder=dict(
        num_layers=1,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=64))),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
            cross_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=64))),
    positional_encoding=dict(num_feats=embed_dims // 2),
    bbox_head=dict(num_classes=num_classes, embed_dims=embed_dims),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=10)),
    test_cfg=dict(max_per_img=20))

# ----------------------------------------------------------------- data
# The pipelines of maskdino_tiny_synthetic_instance.py (its LSJ at 128 px
# with the 0.8-1.25 scale range); masks are loaded so that the cropped boxes
# are recomputed from them, as for Mask DINO (DINO does not use the masks).
train_pipeline = _base_.synthetic_instance_train_pipeline
test_pipeline = [
    dict(type='LoadImageFromFile'),
    _base_.synthetic_test_resize,
    dict(type='LoadAnnotations', with_bbox=True),
    _base_.synthetic_test_pack
]
train_dataloader = dict(
    **_base_.synthetic_peer_train_loader,
    dataset=dict(
        **_base_.synthetic_instance_train_data,
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline))
val_dataloader = dict(
    **_base_.synthetic_loader,
    dataset=dict(**_base_.synthetic_instance_val_data,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric='bbox',
    format_only=False)
test_evaluator = val_evaluator

# ------------------------------------------------------------- schedule
# _base_/models/maskdino_tiny.py's (fp32, 10x the official lr, warm-up,
# x0.1 for the last 20%).
optim_wrapper = {{_base_.tiny_optim_wrapper}}
param_scheduler = {{_base_.tiny_param_scheduler}}
# DINO's runtime counts epochs: the tiny loop, hooks and log by iteration.
train_cfg = dict(_delete_=True, **_base_.tiny_train_cfg)
default_hooks = dict(
    logger=dict(_base_.tiny_default_hooks.logger, log_metric_by_epoch=False),
    checkpoint=dict(_base_.tiny_default_hooks.checkpoint, by_epoch=False))
log_processor = dict(_base_.tiny_log_processor, by_epoch=False)
