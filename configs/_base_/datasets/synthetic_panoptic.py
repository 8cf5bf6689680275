# The synthetic shapes dataset, panoptic segmentation (COCO panoptic layout:
# 3 thing and 2 stuff classes, 128x128 images), for the tiny CPU configs,
# tests and the demo. Generate it first (default root data/synthetic/):
#   python tools/misc/make_synthetic_dataset.py
# Another root (ROOT/coco/...): --cfg-options data_root=ROOT/coco/ (with
# tools/train.py, tools/test.py), or override train/val/test_dataloader
# .dataset.data_root and the evaluators' ann_file / seg_prefix.
_base_ = ['./coco_panoptic_lsj.py', './synthetic_common.py']

data_root = _base_.synthetic_coco_root
metainfo = _base_.synthetic_panoptic_metainfo
image_size = _base_.synthetic_image_size

train_pipeline = _base_.synthetic_panoptic_train_pipeline
test_pipeline = _base_.synthetic_panoptic_test_pipeline
train_dataloader = dict(
    **_base_.synthetic_loader,
    dataset=dict(**_base_.synthetic_panoptic_train_data,
                 pipeline=train_pipeline))
val_dataloader = _base_.synthetic_panoptic_val_loader
test_dataloader = val_dataloader

val_evaluator = _base_.synthetic_panoptic_evaluator
test_evaluator = val_evaluator
