# Mask DINO R50, COCO panoptic (official 3s_dowsample1_2048 panoptic config:
# 53.0 PQ, 48.8 mask AP, 44.3 box AP, 60.6 mIoU). Box init 'no' and boxes
# supervised on stuff too, as in the released checkpoint; set
# decouple_stuff_boxes=True (criterion and assigner) for the paper's
# decoupled box prediction.
_base_ = [
    './_base_/models/maskdino_r50.py',
    './_base_/datasets/coco_panoptic_lsj.py',
    './_base_/schedules/schedule_maskdino_50e.py',
    './_base_/default_runtime.py'
]
num_things_classes = 80
num_stuff_classes = 53
num_classes = num_things_classes + num_stuff_classes
image_size = (1024, 1024)
model = dict(
    data_preprocessor=dict(
        pad_seg=True,
        batch_augments=[
            dict(
                type='BatchFixedSizePad',
                size=image_size,
                img_pad_value=0,
                pad_mask=True,
                mask_pad_value=0,
                pad_seg=True,
                seg_pad_value=255)
        ]),
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
    test_cfg=dict(instance_on=True, panoptic_on=True, semantic_on=True))
