# The official large-scale jitter of the COCO instance and panoptic recipes
# (detectron2 mappers coco_{instance,panoptic}_new_baseline_dataset_mapper
# .py): flip, resize by 0.1-2.0 of 1024x1024, fixed 1024x1024 crop padded
# with 128, boxes recomputed from the cropped masks, emptied instances
# dropped (LargeScaleJitter, projects/mask_dino/datasets/transforms.py).
image_size = (1024, 1024)
coco_lsj_augment = dict(
    type='LargeScaleJitter', scale=image_size, ratio_range=(0.1, 2.0))
