# Test-time augmentation of the instance configs
# (`tools/test.py CONFIG CKPT --tta`): three scales x horizontal flip.
# MaskDINOTTAModel flips boxes and masks back, keeps the best boxes with
# class-aware NMS and merges the masks of each NMS cluster by a
# score-weighted vote (mmdet's DetTTAModel merges boxes only). It keeps the
# model's test_cfg.max_per_image detections per image.
# The views are those of the COCO test scale (short side 800); a config at
# another scale replaces the Resize of each view (see
# maskdino_tiny_synthetic_instance.py).
tta_model = dict(
    type='MaskDINOTTAModel',
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), mask_thr=0.5))
tta_img_scales = [(1333, 640), (1333, 800), (1333, 960)]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale=scale, keep_ratio=True)
                for scale in tta_img_scales
            ],
            [
                dict(type='RandomFlip', prob=1.0),
                dict(type='RandomFlip', prob=0.0)
            ],
            # after the resize, as in the test pipeline: the GT stays in
            # the original frame, where the merged predictions are
            [dict(type='LoadAnnotations', with_bbox=True, with_mask=True)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape',
                               'img_shape', 'scale_factor', 'flip',
                               'flip_direction'))
            ]
        ])
]
