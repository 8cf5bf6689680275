# Mask DINO R50 for semantic segmentation: the model keys shared by the
# official ADE20K (maskdino_R50_bs16_160k_steplr) and Cityscapes
# (maskdino_R50_bs16_90k_steplr) yamls: 3 levels (res3-res5, 'high2low', no
# extra level), encoder FFN 1024, 100 learned queries and anchors
# (single-stage, box init 'no'), softmax CE with a no-object class
# (weight 0.1), semantic inference with object-mask threshold 0.8.
# The class count is set by the task config (see `num_classes` there): the
# fields below that depend on it are written for ADE20K (150 classes).
_base_ = './maskdino_r50.py'

num_classes = 150
model = dict(
    data_preprocessor=dict(pad_seg=True, seg_pad_value=255),
    panoptic_head=dict(
        num_things_classes=0,
        num_stuff_classes=num_classes,
        num_queries=100,
        two_stage=False,
        initialize_box_type='no',
        semantic_ce=True,
        pixel_decoder=dict(
            num_extra_levels=0,
            feature_order='high2low',
            encoder=dict(
                layer_cfg=dict(ffn_cfg=dict(feedforward_channels=1024)))),
        criterion=dict(
            loss_cls=dict(
                _delete_=True,
                type='CrossEntropyLoss',
                use_sigmoid=False,
                loss_weight=4.0,
                reduction='mean',
                class_weight=[1.0] * num_classes + [0.1]))),
    test_cfg=dict(
        instance_on=False,
        panoptic_on=False,
        semantic_on=True,
        object_mask_thr=0.8))
