# Mask DINO Swin-L (IN-21k, 384), COCO panoptic (official swin panoptic
# 4s_dowsample1_2048: 58.3 PQ, 50.6 mask AP, 56.2 box AP, 67.5 mIoU):
# res2-res5 + one extra level (5 levels), box init 'no'.
_base_ = [
    './maskdino_r50_coco_panoptic.py', './_base_/models/maskdino_swin-l.py'
]
model = dict(
    backbone={{_base_.swin_l_backbone}},
    panoptic_head=dict(
        pixel_decoder={{_base_.swin_l_pixel_decoder}}))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={{_base_.swin_l_custom_keys}}))
