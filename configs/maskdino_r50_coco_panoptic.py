# Mask DINO R50, COCO panoptic (official
# coco/panoptic-segmentation/maskdino_R50_bs16_50ep_3s_dowsample1_2048.yaml:
# 53.0 PQ, 48.8 mask AP, 44.3 box AP, 60.6 mIoU). Model (133 classes, box
# init 'no', instance + panoptic + semantic outputs):
# _base_/models/maskdino_r50_panoptic.py; evaluated with PQ, COCO AP and
# mIoU. LSJ 1024x1024, 368,750 iterations at batch 16, fp16 mixed precision
# (official SOLVER.AMP.ENABLED True).
_base_ = [
    './_base_/models/maskdino_r50_panoptic.py',
    './_base_/datasets/coco_panoptic_lsj.py',
    './_base_/schedules/schedule_maskdino_50e.py',
    './_base_/default_runtime.py'
]
# fp16 AMP needs CUDA: tools/train.py trains in fp32 on a CPU-only machine;
# with the runner directly, set optim_wrapper.type='OptimWrapper' there.
optim_wrapper = dict(type='AmpOptimWrapper')
