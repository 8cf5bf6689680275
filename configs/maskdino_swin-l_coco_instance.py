# Mask DINO Swin-L (IN-21k, 384), COCO instance (official
# swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048: 52.3 mask AP / 59.0 box
# AP): res2-res5 + one extra level (5 levels), bitmask anchor init.
# Test-time augmentation (--tta): tta_model / tta_pipeline of the R50
# instance config, inherited unchanged.
_base_ = [
    './maskdino_r50_coco_instance.py', './_base_/models/maskdino_swin-l.py'
]
model = dict(
    backbone={{_base_.swin_l_backbone}},
    panoptic_head=dict(
        initialize_box_type='bitmask',
        pixel_decoder={{_base_.swin_l_pixel_decoder}}))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={{_base_.swin_l_custom_keys}}))
