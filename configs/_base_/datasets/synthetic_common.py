# What every config on the synthetic shapes dataset shares: the datasets of
# _base_/datasets/synthetic_*.py and the learning-benchmark peers in
# configs/benchmarks/. Only `synthetic_*` names, so that this file can sit
# next to any other base.
synthetic_image_size = (128, 128)

# The official LSJ augmentation at 128 px with a milder scale range
# (0.8-1.25): flip, resize, crop, pad to the 128x128 canvas, boxes recomputed
# from the cropped masks, instances left without foreground dropped.
synthetic_lsj_augment = [
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomResize',
        scale=synthetic_image_size,
        ratio_range=(0.8, 1.25),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_size=synthetic_image_size,
        crop_type='absolute',
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(
        type='Pad',
        size=synthetic_image_size,
        pad_val=dict(img=(128, 128, 128), masks=0, seg=255)),
    dict(
        type='FilterAnnotations',
        min_gt_bbox_wh=(1e-5, 1e-5),
        by_mask=True,
        keep_empty=False),
]
synthetic_test_resize = dict(
    type='Resize', scale=synthetic_image_size, keep_ratio=True)
synthetic_test_pack = dict(
    type='PackDetInputs',
    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
               'scale_factor'))
