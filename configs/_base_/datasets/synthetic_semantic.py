# The synthetic shapes dataset, semantic segmentation (ADE20K layout: label
# 0 ignored, 5 classes, 128x128 images), for the tiny CPU configs and tests.
# Generate it first (default root data/synthetic/):
#   python tools/misc/make_synthetic_dataset.py
# Another root (ROOT/ade/ADEChallengeData2016/): --cfg-options
# data_root=ROOT/ade/ADEChallengeData2016/ (with tools/train.py,
# tools/test.py), or override train/val/test_dataloader.dataset.data_root.
_base_ = ['./ade20k_semantic.py', './synthetic_common.py']

data_root = 'data/synthetic/ade/ADEChallengeData2016/'
metainfo = dict(
    classes=_base_.synthetic_panoptic_metainfo.classes,
    palette=_base_.synthetic_panoptic_metainfo.palette)
crop_size = (128, 128)  # (h, w)

# The official semantic pipeline at 128 px with a milder scale range:
# short side in {102, ..., 153} (0.8-1.2 x 128), random 128x128 crop,
# photometric distortion, flip, pad to the 128x128 canvas.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(_base_.semantic_seg_loader, reduce_zero_label=True),
    dict(
        type='RandomChoiceResize',
        scales=[(4 * crop_size[0], int(crop_size[0] * 0.1 * k))
                for k in range(8, 13)],
        keep_ratio=True),
    dict(_base_.semantic_crop, crop_size=crop_size),
    *_base_.semantic_color_and_flip,
    dict(_base_.semantic_pad, size=(crop_size[1], crop_size[0])),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize', scale=(4 * crop_size[0], crop_size[0]),
        keep_ratio=True),
    dict(_base_.semantic_seg_loader, reduce_zero_label=True),
    _base_.semantic_test_pack
]
# paths under data_root as in ADE20K (the base's data_prefix)
train_dataloader = dict(
    **_base_.synthetic_loader,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    **_base_.synthetic_loader,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
