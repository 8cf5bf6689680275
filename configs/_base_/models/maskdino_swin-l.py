# Swin-L (IN-21k, 384) parts of the official Swin-L Mask DINO configs:
# res2-res5 (192/384/768/1536 channels) + one extra level = 5 levels.
# Task configs pick these up with `{{_base_.swin_l_*}}`; the level count
# (5) follows from the pixel decoder's, which passes it down.
swin_l_depths = [2, 2, 18, 2]
swin_l_backbone = dict(
    _delete_=True,
    type='SwinTransformer',
    pretrain_img_size=384,
    embed_dims=192,
    depths=swin_l_depths,
    num_heads=[6, 12, 24, 48],
    window_size=12,
    mlp_ratio=4,
    qkv_bias=True,
    qk_scale=None,
    drop_rate=0.0,
    attn_drop_rate=0.0,
    drop_path_rate=0.3,
    patch_norm=True,
    out_indices=(0, 1, 2, 3),
    with_cp=False,
    convert_weights=True,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='https://github.com/SwinTransformer/storage/releases/'
        'download/v1.0.0/swin_large_patch4_window12_384_22k.pth'))
swin_l_pixel_decoder = dict(
    in_channels=[192, 384, 768, 1536],
    encoder_in_indices=(0, 1, 2, 3),
    num_extra_levels=1)
# Optimizer keys, as the official build_optimizer: every backbone parameter
# gets lr x0.1; Swin's relative position tables, absolute embedding and
# LayerNorms get no weight decay. A matching custom key overrides
# `norm_decay_mult`, so the backbone norms (patch_embed.norm, the blocks'
# norm1/norm2, the downsample norms and the output norms norm0-3 of mmdet's
# SwinTransformer) are listed.
swin_l_no_decay = dict(lr_mult=0.1, decay_mult=0.0)
swin_l_custom_keys = {
    'relative_position_bias_table': swin_l_no_decay,
    'absolute_pos_embed': swin_l_no_decay,
    'backbone.patch_embed.norm': swin_l_no_decay,
    'backbone.norm': swin_l_no_decay,
}
swin_l_custom_keys.update({
    f'backbone.stages.{i}.blocks.{j}.norm':
    swin_l_no_decay
    for i, depth in enumerate(swin_l_depths)
    for j in range(depth)
})
swin_l_custom_keys.update({
    f'backbone.stages.{i}.downsample.norm':
    swin_l_no_decay
    for i in range(len(swin_l_depths) - 1)
})
