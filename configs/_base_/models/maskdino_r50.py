# Mask DINO R50 (official `maskdino_R50_bs16_50ep_3s_dowsample1_2048`):
# res3-res5 + one extra stride-2 level (4 levels, 'low2high'), encoder FFN
# 2048, 300 queries from two-stage selection, mask2box anchor init, DN 'seg'.
# Class counts, semantic_ce, num_points and decouple_stuff_boxes are stated
# once: the head passes them to its criterion (which passes them to the
# assigner) and the detector to the fusion head and test_cfg. So is the
# width: the head passes embed_dims to its pixel decoder (channels, encoder
# layers, positional encoding) and decoder layers; the level count follows
# from the pixel decoder's levels and reaches every deformable attention.
num_things_classes = 80
num_stuff_classes = 0
# The encoder's self-attention and the decoder's cross-attention
# (MultiScaleDeformableAttention), and the FFN of both.
deformable_attn_cfg = dict(
    num_heads=8, num_points=4, dropout=0.0, batch_first=True)
ffn_cfg = dict(
    feedforward_channels=2048,
    num_fcs=2,
    ffn_drop=0.0,
    act_cfg=dict(type='ReLU', inplace=True))

data_preprocessor = dict(
    type='DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=32,
    pad_mask=True,
    mask_pad_value=0,
    pad_seg=False,
    seg_pad_value=255)

model = dict(
    type='MaskDINO',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,  # official FREEZE_AT 0
        norm_cfg=dict(type='BN', requires_grad=False),  # detectron2 FrozenBN
        norm_eval=True,
        style='pytorch',
        # torchvision's ImageNet ResNet-50 (IMAGENET1K_V1; the official code
        # starts from torchvision's R-50 too), named by URL: mmengine resolves
        # 'torchvision://resnet50' by importing torchvision, which this
        # project does not install. Downloaded once to
        # $TORCH_HOME/hub/checkpoints/ (place the file there offline).
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.pytorch.org/models/'
            'resnet50-0676ba61.pth')),
    panoptic_head=dict(
        type='MaskDINOHead',
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        num_queries=300,
        embed_dims=256,
        two_stage=True,
        learn_tgt=False,
        initial_pred=True,
        initialize_box_type='mask2box',
        semantic_ce=False,
        pixel_decoder=dict(
            type='MaskDINOPixelDecoder',
            in_channels=[256, 512, 1024, 2048],
            strides=[4, 8, 16, 32],
            encoder_in_indices=(1, 2, 3),
            num_extra_levels=1,
            feature_order='low2high',
            common_stride=4,
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU'),
            encoder=dict(  # DeformableDetrTransformerEncoder
                num_layers=6,
                layer_cfg=dict(
                    self_attn_cfg=deformable_attn_cfg, ffn_cfg=ffn_cfg)),
            positional_encoding=dict(normalize=True)),
        decoder=dict(
            type='MaskDINOTransformerDecoder',
            num_layers=9,
            return_intermediate=True,
            post_norm_cfg=None,
            with_cp=False,
            layer_cfg=dict(  # DeformableDetrTransformerDecoderLayer
                self_attn_cfg=dict(  # MultiheadAttention
                    num_heads=8,
                    attn_drop=0.0,
                    proj_drop=0.0,
                    batch_first=True),
                cross_attn_cfg=deformable_attn_cfg,
                ffn_cfg=ffn_cfg)),
        dn_cfg=dict(dn_num=100, noise_scale=0.4),
        criterion=dict(
            type='MaskDINOCriterion',
            decouple_stuff_boxes=False,
            num_points=12544,
            oversample_ratio=3.0,
            importance_sample_ratio=0.75,
            assigner=dict(
                type='HybridHungarianAssigner',
                match_costs=[
                    dict(type='FocalLossCost', weight=4.0, eps=1e-8),
                    dict(type='CrossEntropyLossCost', weight=5.0,
                         use_sigmoid=True),
                    dict(type='DiceCost', weight=5.0, pred_act=True,
                         eps=1.0),
                ],
                box_match_costs=[
                    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                    dict(type='IoUCost', iou_mode='giou', weight=2.0),
                ]),
            loss_cls=dict(
                type='FocalLoss',
                use_sigmoid=True,
                gamma=2.0,
                alpha=0.25,
                loss_weight=4.0),
            loss_mask=dict(
                type='CrossEntropyLoss',
                use_sigmoid=True,
                reduction='mean',
                loss_weight=5.0),
            loss_dice=dict(
                type='DiceLoss',
                use_sigmoid=True,
                activate=True,
                reduction='mean',
                naive_dice=True,
                eps=1.0,
                loss_weight=5.0),
            loss_bbox=dict(type='L1Loss', loss_weight=5.0),
            loss_iou=dict(type='DETRGIoULoss', loss_weight=2.0))),
    panoptic_fusion_head=dict(
        type='MaskDINOFusionHead'),
    train_cfg=None,
    test_cfg=dict(
        instance_on=True,
        panoptic_on=False,
        semantic_on=False,
        max_per_image=100,
        object_mask_thr=0.25,
        iou_thr=0.8,
        panoptic_temperature=0.06,
        transform_eval=True,
        focus_on_box=False),
    init_cfg=None)
