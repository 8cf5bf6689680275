# Tiny Mask DINO shared by the synthetic configs
# (maskdino_tiny_synthetic_{instance,panoptic,semantic}.py), which merge
# `tiny_model` into the model of their R50 task config (`model =
# _base_.tiny_model`): ResNet-18 at 1/8 width, 32-d transformer (the head
# passes embed_dims down), 1 encoder and 3 decoder layers, 256 points.
# Level counts, query selection and losses stay those of the task config;
# the backbone, width, queries and schedule below are shared with
# configs/benchmarks/. (A variable, not a `model` of this file: mmengine
# forbids one top-level key in two files of a `_base_` list, and the task
# configs also take `model` from their R50 base.)
tiny_embed_dims = 32
# No pretrained weights at this width: trained from scratch, so GN instead of
# the frozen BN of the pretrained R50.
tiny_backbone = dict(
    depth=18,
    base_channels=8,
    norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
    norm_eval=False,
    init_cfg=None)
tiny_num_queries = 20
tiny_dn_cfg = dict(dn_num=10, noise_scale=0.4)
tiny_num_points = 256
tiny_pixel_decoder = dict(
    in_channels=[8, 16, 32, 64],
    norm_cfg=dict(type='GN', num_groups=8),
    encoder=dict(
        num_layers=1,
        layer_cfg=dict(
            self_attn_cfg=dict(num_heads=4),
            ffn_cfg=dict(feedforward_channels=64))))
tiny_decoder = dict(
    num_layers=3,
    layer_cfg=dict(
        self_attn_cfg=dict(num_heads=4),
        cross_attn_cfg=dict(num_heads=4),
        ffn_cfg=dict(feedforward_channels=64)))
tiny_model = dict(
    backbone=tiny_backbone,
    panoptic_head=dict(
        num_queries=tiny_num_queries,
        embed_dims=tiny_embed_dims,
        dn_cfg=tiny_dn_cfg,
        pixel_decoder=tiny_pixel_decoder,
        decoder=tiny_decoder,
        criterion=dict(num_points=tiny_num_points)))

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
tiny_train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=tiny_max_iters,
    val_interval=tiny_val_interval)
# logged every 20 iterations (window 20), one checkpoint per validation
tiny_default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=tiny_val_interval, max_keep_ckpts=1))
tiny_log_processor = dict(window_size=20)
