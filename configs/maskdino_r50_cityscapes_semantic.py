# Mask DINO R50, Cityscapes semantic (official
# cityscapes/semantic-segmentation/maskdino_R50_bs16_90k_steplr.yaml:
# 79.8 mIoU): the ADE20K model with 19 classes and a trainable SyncBN
# backbone, 512x1024 crops, full-resolution (1024x2048) test, 90k iterations
# at batch 16, lr x0.1 at 80k and 87k, fp32 (AMP off in the official yaml).
_base_ = [
    './_base_/models/maskdino_r50_semantic.py',
    './_base_/datasets/cityscapes_semantic.py',
    './_base_/schedules/schedule_maskdino_90k.py',
    './_base_/default_runtime.py'
]
num_classes = 19
model = dict(
    # official RESNETS.NORM "SyncBN" (FREEZE_AT 0): BN trained and synced
    backbone=dict(
        norm_cfg=dict(type='SyncBN', requires_grad=True), norm_eval=False),
    panoptic_head=dict(
        num_stuff_classes=num_classes,
        criterion=dict(
            loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]))))

# The trainable backbone BNs get the backbone lr (x0.1) and no weight decay,
# as official (custom keys override `norm_decay_mult`, so they are listed).
# Names of mmdet's ResNet-50: stem bn1, layerI.J.bn1-3, layerI.0.downsample.1.
backbone_norm_multi = dict(lr_mult=0.1, decay_mult=0.0)
backbone_norm_keys = {'backbone.bn1': backbone_norm_multi}
backbone_norm_keys.update({
    f'backbone.layer{i + 1}.{j}.bn': backbone_norm_multi
    for i, num_blocks in enumerate((3, 4, 6, 3))
    for j in range(num_blocks)
})
backbone_norm_keys.update({
    f'backbone.layer{i + 1}.0.downsample.1':
    backbone_norm_multi
    for i in range(4)
})
optim_wrapper = dict(paramwise_cfg=dict(custom_keys=backbone_norm_keys))
