# Mask DINO R50, COCO instance segmentation (official
# coco/instance-segmentation/maskdino_R50_bs16_50ep_3s_dowsample1_2048.yaml:
# 46.3 mask AP / 51.7 box AP): LSJ 1024x1024, 368,750 iterations at batch 16
# (~50 epochs), fp16 mixed precision (official SOLVER.AMP.ENABLED True).
# Test-time augmentation (--tta): _base_/tta/maskdino_instance_tta.py.
_base_ = [
    './_base_/models/maskdino_r50.py',
    './_base_/datasets/coco_instance_lsj.py',
    './_base_/schedules/schedule_maskdino_50e.py',
    './_base_/default_runtime.py', './_base_/tta/maskdino_instance_tta.py'
]
# fp16 AMP needs CUDA: tools/train.py trains in fp32 on a CPU-only machine;
# with the runner directly, set optim_wrapper.type='OptimWrapper' there.
optim_wrapper = dict(type='AmpOptimWrapper')
