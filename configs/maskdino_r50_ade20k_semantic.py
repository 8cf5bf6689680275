# Mask DINO R50, ADE20K semantic (official 160k_steplr config: 48.7 mIoU):
# 3 levels ('high2low', no extra level), encoder FFN 1024, 100 learned
# queries and anchors (single-stage), softmax CE with a no-object class.
_base_ = [
    './_base_/models/maskdino_r50.py',
    './_base_/datasets/ade20k_semantic.py',
    './_base_/schedules/schedule_maskdino_160k.py',
    './_base_/default_runtime.py'
]
num_things_classes = 0
num_stuff_classes = 150
num_classes = num_things_classes + num_stuff_classes
num_levels = 3
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(
        pad_seg=True,
        batch_augments=[
            dict(
                type='BatchFixedSizePad',
                size=crop_size,
                img_pad_value=0,
                pad_mask=True,
                mask_pad_value=0,
                pad_seg=True,
                seg_pad_value=255)
        ]),
    panoptic_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        num_queries=100,
        two_stage=False,
        initialize_box_type='no',
        semantic_ce=True,
        pixel_decoder=dict(
            num_extra_levels=0,
            feature_order='high2low',
            encoder=dict(
                layer_cfg=dict(
                    self_attn_cfg=dict(num_levels=num_levels),
                    ffn_cfg=dict(feedforward_channels=1024)))),
        decoder=dict(
            layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))),
        criterion=dict(
            num_classes=num_classes,
            num_things_classes=num_things_classes,
            assigner=dict(num_things_classes=num_things_classes),
            loss_cls=dict(
                _delete_=True,
                type='CrossEntropyLoss',
                use_sigmoid=False,
                loss_weight=4.0,
                reduction='mean',
                class_weight=[1.0] * num_classes + [0.1]))),
    panoptic_fusion_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    test_cfg=dict(
        instance_on=False,
        panoptic_on=False,
        semantic_on=True,
        object_mask_thr=0.8,
        semantic_ce=True))
