# The official large-scale jitter of the COCO instance and panoptic recipes
# (detectron2 mappers coco_{instance,panoptic}_new_baseline_dataset_mapper
# .py): horizontal flip -> ResizeScale 0.1-2.0 of 1024x1024 (aspect kept) ->
# FixedSizeCrop 1024x1024 padded with 128 -> boxes recomputed from the
# cropped masks, instances left empty dropped.
image_size = (1024, 1024)
coco_lsj_augment = [
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomResize',
        scale=image_size,
        ratio_range=(0.1, 2.0),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_size=image_size,
        crop_type='absolute',
        recompute_bbox=True,
        allow_negative_crop=True),
    # Pad inside the pipeline (not in the data preprocessor) so that
    # img_shape is the 1024x1024 canvas the official code normalises the
    # GT boxes by; raw pad value 128 as detectron2's FixedSizeCrop.
    dict(
        type='Pad',
        size=image_size,
        pad_val=dict(img=(128, 128, 128), masks=0, seg=255)),
    dict(
        type='FilterAnnotations',
        min_gt_bbox_wh=(1e-5, 1e-5),
        by_mask=True,
        keep_empty=False),
]
