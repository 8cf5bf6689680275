# Mask DINO R50, COCO instance segmentation (official
# coco/instance-segmentation/maskdino_R50_bs16_50ep_3s_dowsample1_2048.yaml:
# 46.3 mask AP / 51.7 box AP): LSJ 1024x1024, 368,750 iterations at batch 16
# (~50 epochs), fp16 mixed precision (official SOLVER.AMP.ENABLED True).
_base_ = [
    './_base_/models/maskdino_r50.py',
    './_base_/datasets/coco_instance_lsj.py',
    './_base_/schedules/schedule_maskdino_50e.py',
    './_base_/default_runtime.py'
]
# fp16 AMP needs CUDA: tools/train.py trains in fp32 on a CPU-only machine;
# with the runner directly, set optim_wrapper.type='OptimWrapper' there.
optim_wrapper = dict(type='AmpOptimWrapper')

# Test-time augmentation (`tools/test.py CONFIG CKPT --tta`): three scales x
# horizontal flip. MaskDINOTTAModel flips boxes and masks back, keeps the
# best boxes with class-aware NMS and merges the masks of each NMS cluster
# by a score-weighted vote (mmdet's DetTTAModel merges boxes only). It keeps
# the model's test_cfg.max_per_image detections per image.
tta_model = dict(
    type='MaskDINOTTAModel',
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), mask_thr=0.5))
tta_img_scales = [(1333, 640), (1333, 800), (1333, 960)]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale=scale, keep_ratio=True)
                for scale in tta_img_scales
            ],
            [
                dict(type='RandomFlip', prob=1.0),
                dict(type='RandomFlip', prob=0.0)
            ],
            # after the resize, as in the test pipeline: the GT stays in
            # the original frame, where the merged predictions are
            [dict(type='LoadAnnotations', with_bbox=True, with_mask=True)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape',
                               'img_shape', 'scale_factor', 'flip',
                               'flip_direction'))
            ]
        ])
]
