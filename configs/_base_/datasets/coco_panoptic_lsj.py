# COCO panoptic with the official large-scale jitter (mapper
# `coco_panoptic_lsj`, coco_lsj_augment.py; the panoptic map is padded with
# VOID). Crowd segments are not targets. The head builds
# one target per thing instance (from gt_instances) and one per stuff class
# present in gt_sem_seg, each with the tight box of its mask.
# One deliberate difference: thing masks that vanish in the crop are
# dropped here (official keeps them as empty targets).
#
# Evaluation as the official `coco_2017_val_panoptic_with_sem_seg`: PQ, COCO
# box/mask AP of the thing predictions (instance json), and mIoU over the
# 133 classes of the semantic map derived from the panoptic PNGs (crowd
# pixels keep their class, unlabelled pixels are ignored).
#
# Another copy of COCO (ROOT/{train2017,val2017,annotations}):
#   --cfg-options data_root=ROOT
# (tools/train.py, tools/test.py, tools/demo/image_demo.py) moves every
# dataloader and evaluator path under it (docs/datasets.md).
_base_ = './coco_common.py'

dataset_type = 'CocoPanopticDataset'
backend_args = _base_.backend_args

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(
        type='LoadPanopticAnnotations',
        with_bbox=True,
        with_mask=True,
        with_seg=True,
        backend_args=backend_args),
    _base_.coco_lsj_augment,
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    _base_.coco_test_resize,
    # after Resize: the GT semantic map stays at the original size, where
    # the predictions are evaluated
    dict(type='LoadPanopticAnnotations', backend_args=backend_args),
    _base_.coco_test_pack
]

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(
            img='train2017/', seg='annotations/panoptic_train2017/'),
        # official panoptic training filters nothing (the dataset dicts have
        # no `annotations`): stuff-only images are trained on too
        filter_cfg=dict(filter_empty_gt=False, min_size=32),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = [
    dict(
        type='MaskDINOCocoPanopticMetric',
        ann_file=_base_.data_root + 'annotations/panoptic_val2017.json',
        seg_prefix=_base_.data_root + 'annotations/panoptic_val2017/',
        backend_args=backend_args),
    dict(
        type='CocoMetric',
        ann_file=_base_.data_root + 'annotations/instances_val2017.json',
        metric=['bbox', 'segm'],
        backend_args=backend_args),
    dict(type='MaskDINOSemSegMetric', iou_metrics=['mIoU'])
]
test_evaluator = val_evaluator
