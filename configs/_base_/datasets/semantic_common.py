# The steps of the official semantic pipeline (detectron2 mapper
# `mask_former_semantic`) that ADE20K, Cityscapes and the synthetic semantic
# dataset share, and their evaluator; each dataset base sets its sizes:
#   ResizeShortestEdge("choice") -> random crop with the category-area
#   constraint (SINGLE_CATEGORY_MAX_AREA 1.0, i.e. off) -> ColorAugSSD ->
#   horizontal flip [-> pad]; test: one resize; mIoU.
# Only `semantic_*` names besides the evaluators.

# The label map alone (+ reduce_zero_label, backend_args where needed).
semantic_seg_loader = dict(
    type='LoadAnnotations', with_bbox=False, with_mask=False, with_seg=True)
# + crop_size
semantic_crop = dict(
    type='SemSegRandomCrop', cat_max_ratio=1.0, ignore_index=255)
semantic_color_and_flip = [
    # mmseg's version works on uint8 with clipping and OpenCV hue units,
    # like detectron2's ColorAugSSDTransform (deltas 32 / 0.5-1.5 / 18)
    dict(type='mmseg.PhotoMetricDistortion'),
    dict(type='RandomFlip', prob=0.5)
]
# Padded in the pipeline (image 128, label 255; + size): img_shape is then
# the crop canvas, the box normaliser of the official model.
semantic_pad = dict(type='Pad', pad_val=dict(img=(128, 128, 128), seg=255))
semantic_test_pack = dict(
    type='PackDetInputs',
    meta_keys=('img_path', 'ori_shape', 'img_shape', 'scale_factor'))

val_evaluator = dict(type='MaskDINOSemSegMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
