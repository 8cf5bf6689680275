# The synthetic shapes dataset, instance segmentation (COCO layout: 3 thing
# classes, 128x128 images), for the tiny CPU configs, tests and the demo.
# Generate it first (default root data/synthetic/):
#   python tools/misc/make_synthetic_dataset.py
# Another root (ROOT/coco/...): --cfg-options data_root=ROOT/coco/ (with
# tools/train.py, tools/test.py), or override train/val/test_dataloader
# .dataset.data_root and val/test_evaluator.ann_file.
_base_ = ['./coco_instance_lsj.py', './synthetic_common.py']

data_root = _base_.synthetic_coco_root
metainfo = _base_.synthetic_instance_metainfo
image_size = _base_.synthetic_image_size

train_pipeline = _base_.synthetic_instance_train_pipeline
test_pipeline = [
    dict(type='LoadImageFromFile'),
    _base_.synthetic_test_resize,
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    _base_.synthetic_test_pack
]
train_dataloader = dict(
    **_base_.synthetic_loader,
    dataset=dict(**_base_.synthetic_instance_train_data,
                 pipeline=train_pipeline))
val_dataloader = dict(
    **_base_.synthetic_loader,
    dataset=dict(**_base_.synthetic_instance_val_data,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(
    _delete_=True,
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False)
test_evaluator = val_evaluator
