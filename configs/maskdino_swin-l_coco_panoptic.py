# Mask DINO Swin-L (IN-21k, 384), COCO panoptic (official
# swin panoptic 4s_dowsample1_2048: 58.3 PQ, 50.6 mask AP, 56.2 box AP,
# 67.5 mIoU): res2-res5 + one extra level (5 levels), box init no.
_base_ = './maskdino_r50_coco_panoptic.py'
num_levels = 5
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        pretrain_img_size=384,
        embed_dims=192,
        depths=[2, 2, 18, 2],
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
            'download/v1.0.0/swin_large_patch4_window12_384_22k.pth')),
    panoptic_head=dict(
        initialize_box_type='no',
        pixel_decoder=dict(
            in_channels=[192, 384, 768, 1536],
            encoder_in_indices=(0, 1, 2, 3),
            num_extra_levels=1,
            encoder=dict(
                layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels)))),
        decoder=dict(
            layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels)))))

# Swin's relative position tables and absolute embedding get no decay.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'relative_position_bias_table': dict(decay_mult=0.0),
            'absolute_pos_embed': dict(decay_mult=0.0),
        }))
