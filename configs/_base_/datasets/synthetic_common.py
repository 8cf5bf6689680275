# What every config on the synthetic shapes dataset shares: the datasets of
# _base_/datasets/synthetic_*.py and the learning-benchmark peers in
# configs/benchmarks/. Only `synthetic_*` names, so that this file can sit
# next to any other base.
synthetic_image_size = (128, 128)

# The official LSJ (LargeScaleJitter, as _base_/datasets/coco_lsj_augment.py)
# at 128 px with a milder scale range.
synthetic_lsj_augment = dict(
    type='LargeScaleJitter', scale=synthetic_image_size,
    ratio_range=(0.8, 1.25))
synthetic_test_resize = dict(
    type='Resize', scale=synthetic_image_size, keep_ratio=True)
synthetic_test_pack = dict(
    type='PackDetInputs',
    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
               'scale_factor'))

# The two COCO-layout datasets (things; things + stuff): metainfo, paths,
# pipelines, evaluators and dataloader settings (batch 2, no workers).
synthetic_coco_root = 'data/synthetic/coco/'
synthetic_thing_classes = ('disc', 'square', 'triangle')
synthetic_stuff_classes = ('sky', 'ground')
synthetic_thing_palette = [(205, 45, 40), (40, 165, 60), (235, 195, 35)]
synthetic_stuff_palette = [(150, 190, 240), (125, 90, 55)]
synthetic_instance_metainfo = dict(
    classes=synthetic_thing_classes, palette=synthetic_thing_palette)
synthetic_panoptic_metainfo = dict(
    classes=synthetic_thing_classes + synthetic_stuff_classes,
    thing_classes=synthetic_thing_classes,
    stuff_classes=synthetic_stuff_classes,
    palette=synthetic_thing_palette + synthetic_stuff_palette)
synthetic_loader = dict(batch_size=2, num_workers=0, persistent_workers=False)

# Dataloader `dataset`s without their pipelines.
synthetic_instance_train_data = dict(
    data_root=synthetic_coco_root,
    metainfo=synthetic_instance_metainfo,
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img='train2017/'))
synthetic_instance_val_data = dict(
    data_root=synthetic_coco_root,
    metainfo=synthetic_instance_metainfo,
    ann_file='annotations/instances_val2017.json',
    data_prefix=dict(img='val2017/'))
synthetic_panoptic_train_data = dict(
    data_root=synthetic_coco_root,
    metainfo=synthetic_panoptic_metainfo,
    ann_file='annotations/panoptic_train2017.json',
    data_prefix=dict(img='train2017/', seg='annotations/panoptic_train2017/'))
synthetic_panoptic_val_data = dict(
    data_root=synthetic_coco_root,
    metainfo=synthetic_panoptic_metainfo,
    ann_file='annotations/panoptic_val2017.json',
    data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'))

synthetic_instance_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    synthetic_lsj_augment,
    dict(type='PackDetInputs')
]
synthetic_panoptic_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='LoadPanopticAnnotations',
        with_bbox=True,
        with_mask=True,
        with_seg=True),
    synthetic_lsj_augment,
    dict(type='PackDetInputs')
]
synthetic_panoptic_test_pipeline = [
    dict(type='LoadImageFromFile'), synthetic_test_resize,
    dict(type='LoadPanopticAnnotations'), synthetic_test_pack
]
synthetic_panoptic_evaluator = [
    dict(
        type='MaskDINOCocoPanopticMetric',
        ann_file=synthetic_coco_root + 'annotations/panoptic_val2017.json',
        seg_prefix=synthetic_coco_root + 'annotations/panoptic_val2017/',
        nproc=2),
    dict(
        type='CocoMetric',
        ann_file=synthetic_coco_root + 'annotations/instances_val2017.json',
        metric=['bbox', 'segm']),
    dict(type='MaskDINOSemSegMetric', iou_metrics=['mIoU'])
]
synthetic_panoptic_val_loader = dict(
    **synthetic_loader,
    dataset=dict(
        **synthetic_panoptic_val_data,
        pipeline=synthetic_panoptic_test_pipeline))
# Training without epochs for the benchmark peers, whose MMDetection bases
# sample by aspect-ratio groups epoch by epoch.
synthetic_peer_train_loader = dict(
    **synthetic_loader,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None)
