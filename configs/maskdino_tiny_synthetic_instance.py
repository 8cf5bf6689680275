# A tiny Mask DINO (same wiring as maskdino_r50_coco_instance.py: 4 levels,
# two-stage, mask2box, DN) for CPU smoke runs, tests and the demo:
# ResNet-18 at 1/8 width, 32-d transformer, 1 encoder and 3 decoder layers.
_base_ = './maskdino_r50_coco_instance.py'
embed_dims = 32
model = dict(
    data_preprocessor=dict(batch_augments=None),
    backbone=dict(depth=18, base_channels=8, init_cfg=None),
    panoptic_head=dict(
        num_queries=20,
        embed_dims=embed_dims,
        dn_cfg=dict(dn_num=10, noise_scale=0.4),
        pixel_decoder=dict(
            in_channels=[8, 16, 32, 64],
            feat_channels=embed_dims,
            out_channels=embed_dims,
            norm_cfg=dict(type='GN', num_groups=8),
            positional_encoding=dict(num_feats=embed_dims // 2),
            encoder=dict(
                num_layers=1,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
                    ffn_cfg=dict(
                        embed_dims=embed_dims, feedforward_channels=64)))),
        decoder=dict(
            num_layers=3,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
                cross_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
                ffn_cfg=dict(embed_dims=embed_dims,
                             feedforward_channels=64))),
        criterion=dict(num_points=256, assigner=dict(num_points=256))),
    test_cfg=dict(max_per_image=10))
