# ADE20K semantic segmentation (150 classes; label 0 = "other" is ignored,
# k -> k - 1), official `mask_former_semantic` mapper and
# Base-ADE20K-SemanticSegmentation.yaml:
#   ResizeShortestEdge(short side in {256, 307, ..., 1024} =
#   int(0.1 * 512 * k) for k = 5..20, "choice", long side <= 2048) ->
#   random 512x512 crop with the category-area constraint
#   (SINGLE_CATEGORY_MAX_AREA 1.0, i.e. off) -> ColorAugSSD ->
#   horizontal flip -> pad to 512x512 (image 128, label 255).
# Test: short side 512, long side <= 2048; mIoU.
# The model turns the label map into one mask (and its tight box) per class
# present (MaskDINOHead.preprocess_gt), as the official mapper does.
#
# Another copy of ADE20K (ROOT = .../ADEChallengeData2016/):
#   --cfg-options data_root=ROOT
# (tools/train.py, tools/test.py, tools/demo/image_demo.py) moves every
# dataloader and evaluator path under it (docs/datasets.md).
_base_ = './default_loaders.py'

dataset_type = 'ADE20KSegDataset'
data_root = 'data/ade/ADEChallengeData2016/'
backend_args = None
crop_size = (512, 512)  # (h, w)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(
        type='LoadAnnotations',
        with_bbox=False,
        with_mask=False,
        with_seg=True,
        reduce_zero_label=True,
        backend_args=backend_args),
    # (long, short) bounds with keep_ratio = ResizeShortestEdge(short, max)
    dict(
        type='RandomChoiceResize',
        scales=[(2048, int(512 * 0.1 * k)) for k in range(5, 21)],
        keep_ratio=True),
    dict(
        type='SemSegRandomCrop',
        crop_size=crop_size,
        cat_max_ratio=1.0,
        ignore_index=255),
    # mmseg's version works on uint8 with clipping and OpenCV hue units,
    # like detectron2's ColorAugSSDTransform (deltas 32 / 0.5-1.5 / 18)
    dict(type='mmseg.PhotoMetricDistortion'),
    dict(type='RandomFlip', prob=0.5),
    # pad in the pipeline: img_shape is then the 512x512 canvas, the box
    # normaliser of the official model
    dict(
        type='Pad',
        size=(crop_size[1], crop_size[0]),
        pad_val=dict(img=(128, 128, 128), seg=255)),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    # after Resize: GT stays at the original size, where mIoU is computed
    dict(
        type='LoadAnnotations',
        with_bbox=False,
        with_mask=False,
        with_seg=True,
        reduce_zero_label=True,
        backend_args=backend_args),
    dict(
        type='PackDetInputs',
        meta_keys=('img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(type='MaskDINOSemSegMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
