# Mask DINO R50, COCO panoptic (official
# coco/panoptic-segmentation/maskdino_R50_bs16_50ep_3s_dowsample1_2048.yaml:
# 53.0 PQ, 48.8 mask AP, 44.3 box AP, 60.6 mIoU): 133 classes (80 things +
# 53 stuff), box init 'no', boxes supervised on stuff too (PANO_BOX_LOSS
# False, as the released checkpoint; set decouple_stuff_boxes=True in the
# criterion and its assigner for the paper's decoupled box prediction).
# Inference writes instance (things only), panoptic and semantic results,
# evaluated with PQ, COCO AP and mIoU. LSJ 1024x1024, 368,750 iterations at
# batch 16, fp16 mixed precision (official SOLVER.AMP.ENABLED True).
_base_ = [
    './_base_/models/maskdino_r50.py',
    './_base_/datasets/coco_panoptic_lsj.py',
    './_base_/schedules/schedule_maskdino_50e.py',
    './_base_/default_runtime.py'
]
num_things_classes = 80
num_stuff_classes = 53
num_classes = num_things_classes + num_stuff_classes
model = dict(
    data_preprocessor=dict(pad_seg=True, seg_pad_value=255),
    panoptic_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        initialize_box_type='no',
        criterion=dict(
            num_classes=num_classes,
            num_things_classes=num_things_classes,
            assigner=dict(num_things_classes=num_things_classes))),
    panoptic_fusion_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    # all three outputs, as the official panoptic yaml (TEST.*_ON True):
    # pred_panoptic_seg (PQ), pred_instances (AP), pred_sem_seg (mIoU)
    test_cfg=dict(instance_on=True, panoptic_on=True, semantic_on=True))
# fp16 AMP needs CUDA: tools/train.py trains in fp32 on a CPU-only machine;
# with the runner directly, set optim_wrapper.type='OptimWrapper' there.
optim_wrapper = dict(type='AmpOptimWrapper')
