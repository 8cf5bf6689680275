# Peer for the learning benchmark (tools/benchmarks/learn_synthetic.py):
# MMDetection's own Mask2Former (mask2former_r50_8xb2-lsj-50e_coco-panoptic)
# shrunk exactly like configs/maskdino_tiny_synthetic_panoptic.py and trained
# on the same synthetic data with the same pipeline, image size (128), batch
# (2), iterations and lr schedule:
# - backbone: _base_/models/maskdino_tiny.py's ResNet-18 at 1/8 width with GN,
#   from scratch (no pretrained weights at this width);
# - transformer: 32-d, 4 heads, FFN 64, 1 encoder layer, 3 decoder layers
#   (one round over the 3 feature levels), 20 queries, 256 sampled points;
# - optimiser: Mask2Former's own AdamW recipe (weight decay 0.05, no decay on
#   norms and embeddings, clip 0.01) with the tiny Mask DINO's lr 1e-3 on
#   every parameter (backbone too), warm-up and x0.1 for the last 20%.
# Outputs: panoptic (PQ), instance (box / mask AP; the boxes are those of the
# masks) and semantic (mIoU) results. MMDetection's Mask2Former has no
# semantic output: SemanticMask2Former / SemanticMaskFormerFusionHead
# (projects/mask_dino/benchmarks/peers.py, loaded below) add Mask2Former's
# semantic inference (softmax class scores x sigmoid masks) and change
# nothing else.
# Train alone: python tools/train.py <this config>
_base_ = [
    'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py',
    '../_base_/models/maskdino_tiny.py',
    '../_base_/datasets/synthetic_common.py'
]
custom_imports = dict(
    imports=['projects.mask_dino.benchmarks.peers'],
    allow_failed_imports=False)

data_root = _base_.synthetic_coco_root
metainfo = _base_.synthetic_panoptic_metainfo
num_things_classes = 3
num_stuff_classes = 2
num_classes = num_things_classes + num_stuff_classes
image_size = _base_.synthetic_image_size
max_iters = {{_base_.tiny_max_iters}}
val_interval = {{_base_.tiny_val_interval}}
embed_dims = _base_.tiny_embed_dims
num_levels = 3

# ---------------------------------------------------------------- model
model = dict(
    type='SemanticMask2Former',
    data_preprocessor=dict(batch_augments=[
        dict(
            type='BatchFixedSizePad',
            size=image_size,
            img_pad_value=0,
            pad_mask=True,
            mask_pad_value=0,
            pad_seg=True,
            seg_pad_value=255)
    ]),
    backbone={{_base_.tiny_backbone}},
    panoptic_head=dict(
        in_channels=[8, 16, 32, 64],
        feat_channels=embed_dims,
        out_channels=embed_dims,
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        num_queries={{_base_.tiny_num_queries}},
        num_transformer_feat_level=num_levels,
        pixel_decoder=dict(
            norm_cfg=dict(type='GN', num_groups=8),
            encoder=dict(
                num_layers=1,
                layer_cfg=dict(
                    self_attn_cfg=dict(
                        embed_dims=embed_dims,
                        num_heads=4,
                        num_levels=num_levels),
                    ffn_cfg=dict(
                        embed_dims=embed_dims, feedforward_channels=64))),
            positional_encoding=dict(num_feats=embed_dims // 2)),
        positional_encoding=dict(num_feats=embed_dims // 2),
        transformer_decoder=dict(
            num_layers=3,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
                cross_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
                ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=64))),
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])),
    panoptic_fusion_head=dict(
        type='SemanticMaskFormerFusionHead',
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    train_cfg=dict(num_points={{_base_.tiny_num_points}}),
    test_cfg=dict(max_per_image=20, semantic_on=True))

# ----------------------------------------------------------------- data
# The pipelines of maskdino_tiny_synthetic_panoptic.py (its LSJ at 128 px
# with the 0.8-1.25 scale range, pad to the 128x128 canvas).
train_pipeline = _base_.synthetic_panoptic_train_pipeline
test_pipeline = _base_.synthetic_panoptic_test_pipeline
train_dataloader = dict(
    **_base_.synthetic_peer_train_loader,
    dataset=dict(
        **_base_.synthetic_panoptic_train_data,
        filter_cfg=dict(filter_empty_gt=False, min_size=32),
        pipeline=train_pipeline))
val_dataloader = _base_.synthetic_panoptic_val_loader
test_dataloader = val_dataloader

val_evaluator = _base_.synthetic_panoptic_evaluator
test_evaluator = val_evaluator

# ------------------------------------------------------------- schedule
# _base_/models/maskdino_tiny.py's (fp32, 10x the official lr, warm-up,
# x0.1 for the last 20%).
optim_wrapper = {{_base_.tiny_optim_wrapper}}
param_scheduler = {{_base_.tiny_param_scheduler}}
train_cfg = dict(_delete_=True, **_base_.tiny_train_cfg)
default_hooks = {{_base_.tiny_default_hooks}}
log_processor = {{_base_.tiny_log_processor}}
