# Cityscapes semantic segmentation (19 train ids, 255 ignored), official
# `mask_former_semantic` mapper and Base-Cityscapes-SemanticSegmentation.yaml:
#   ResizeShortestEdge(short side in {512, 614, ..., 2048} =
#   int(0.1 * 1024 * k) for k = 5..20, "choice", long side <= 4096) ->
#   random 512x1024 (h x w) crop (category-area constraint off, 1.0) ->
#   ColorAugSSD -> flip; no padding (SIZE_DIVISIBILITY -1: every crop of a
#   1024x2048 image is full).
# Test: short side 1024, long side <= 2048 (full-resolution images); mIoU.
#
# Labels are the *_gtFine_labelTrainIds.png maps written by cityscapesscripts
# (or mmseg's tools/dataset_converters/cityscapes.py).
# Another copy of Cityscapes (ROOT with leftImg8bit/ and gtFine/):
#   --cfg-options data_root=ROOT
# (tools/train.py, tools/test.py, tools/demo/image_demo.py) moves every
# dataloader and evaluator path under it (docs/datasets.md).
_base_ = ['./default_loaders.py', './semantic_common.py']

dataset_type = 'mmseg.CityscapesDataset'
data_root = 'data/cityscapes/'
backend_args = None
crop_size = (512, 1024)  # (h, w)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(_base_.semantic_seg_loader, backend_args=backend_args),
    dict(
        type='RandomChoiceResize',
        scales=[(4096, int(1024 * 0.1 * k)) for k in range(5, 21)],
        keep_ratio=True),
    dict(_base_.semantic_crop, crop_size=crop_size),
    *_base_.semantic_color_and_flip,
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(_base_.semantic_seg_loader, backend_args=backend_args),
    _base_.semantic_test_pack
]

# the fields of both datasets
cityscapes_dataset = dict(
    type=dataset_type, data_root=data_root, backend_args=backend_args)
train_dataloader = dict(
    dataset=dict(
        cityscapes_dataset,
        data_prefix=dict(
            img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        cityscapes_dataset,
        data_prefix=dict(
            img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
