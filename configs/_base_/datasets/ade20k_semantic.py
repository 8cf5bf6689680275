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
_base_ = ['./default_loaders.py', './semantic_common.py']

dataset_type = 'ADE20KSegDataset'
data_root = 'data/ade/ADEChallengeData2016/'
backend_args = None
crop_size = (512, 512)  # (h, w)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(
        _base_.semantic_seg_loader,
        reduce_zero_label=True,
        backend_args=backend_args),
    # (long, short) bounds with keep_ratio = ResizeShortestEdge(short, max)
    dict(
        type='RandomChoiceResize',
        scales=[(2048, int(512 * 0.1 * k)) for k in range(5, 21)],
        keep_ratio=True),
    dict(_base_.semantic_crop, crop_size=crop_size),
    *_base_.semantic_color_and_flip,
    dict(_base_.semantic_pad, size=(crop_size[1], crop_size[0])),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    # after Resize: GT stays at the original size, where mIoU is computed
    dict(
        _base_.semantic_seg_loader,
        reduce_zero_label=True,
        backend_args=backend_args),
    _base_.semantic_test_pack
]

# the fields of both datasets
ade20k_dataset = dict(
    type=dataset_type, data_root=data_root, backend_args=backend_args)
train_dataloader = dict(
    dataset=dict(
        ade20k_dataset,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        ade20k_dataset,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
