# Tiny Mask DINO parts shared by the synthetic configs
# (maskdino_tiny_synthetic_{instance,panoptic,semantic}.py), which take them
# with `{{_base_.tiny_*}}` on top of the R50 task configs: ResNet-18 at 1/8
# width, 32-d transformer, 1 encoder and 3 decoder layers, 256 points.
# Level counts, query selection and losses stay those of the task config;
# the schedule at the end is shared with configs/benchmarks/.
tiny_embed_dims = 32
# No pretrained weights at this width: trained from scratch, so GN instead of
# the frozen BN of the pretrained R50.
tiny_backbone = dict(
    depth=18,
    base_channels=8,
    norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
    norm_eval=False,
    init_cfg=None)
tiny_pixel_decoder = dict(
    in_channels=[8, 16, 32, 64],
    feat_channels=tiny_embed_dims,
    out_channels=tiny_embed_dims,
    norm_cfg=dict(type='GN', num_groups=8),
    positional_encoding=dict(num_feats=tiny_embed_dims // 2),
    encoder=dict(
        num_layers=1,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=tiny_embed_dims, num_heads=4),
            ffn_cfg=dict(embed_dims=tiny_embed_dims,
                         feedforward_channels=64))))
tiny_decoder = dict(
    num_layers=3,
    layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=tiny_embed_dims, num_heads=4),
        cross_attn_cfg=dict(embed_dims=tiny_embed_dims, num_heads=4),
        ffn_cfg=dict(embed_dims=tiny_embed_dims, feedforward_channels=64)))
tiny_num_queries = 20
tiny_dn_cfg = dict(dn_num=10, noise_scale=0.4)
tiny_num_points = 256

# Schedule of the tiny configs and of the learning-benchmark peers
# (configs/benchmarks/): fp32; trained from scratch, so 10x the official lr,
# on the backbone too; warm-up, then x0.1 for the last 20%. Merged into each
# task config's AdamW recipe (weight decay, clipping stay those of the task).
tiny_max_iters = 2000
tiny_val_interval = 500
tiny_optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0))))
tiny_param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(
        type='MultiStepLR',
        begin=0,
        end=tiny_max_iters,
        by_epoch=False,
        milestones=[int(tiny_max_iters * 0.8)],
        gamma=0.1)
]
