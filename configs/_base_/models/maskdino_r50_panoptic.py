# Mask DINO R50 for panoptic segmentation (official COCO panoptic yaml
# maskdino_R50_bs16_50ep_3s_dowsample1_2048): 133 classes (80 things + 53
# stuff), box init 'no', boxes supervised on stuff too (PANO_BOX_LOSS False,
# as the released checkpoint; set decouple_stuff_boxes=True in the criterion
# for the paper's decoupled box prediction); inference
# writes instance (things only), panoptic and semantic results.
# The class counts are set by the task config: the fields below that depend
# on them are written for COCO.
_base_ = './maskdino_r50.py'

model = dict(
    data_preprocessor=dict(pad_seg=True, seg_pad_value=255),
    panoptic_head=dict(
        num_things_classes=80, num_stuff_classes=53,
        initialize_box_type='no'),
    # all three outputs, as the official panoptic yaml (TEST.*_ON True):
    # pred_panoptic_seg (PQ), pred_instances (AP), pred_sem_seg (mIoU)
    test_cfg=dict(instance_on=True, panoptic_on=True, semantic_on=True))
