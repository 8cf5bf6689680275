# Mask DINO R50, ADE20K semantic (official
# ade20k/semantic-segmentation/maskdino_R50_bs16_160k_steplr.yaml: 48.7 mIoU):
# 100 learned queries, 3 levels, encoder FFN 1024, softmax CE (151 outputs),
# 512x512 crops, 160k iterations at batch 16, lr x0.1 at 135k and 150k,
# fp32 (AMP off in the official yaml).
_base_ = [
    './_base_/models/maskdino_r50_semantic.py',
    './_base_/datasets/ade20k_semantic.py',
    './_base_/schedules/schedule_maskdino_160k.py',
    './_base_/default_runtime.py'
]
num_classes = 150
model = dict(
    panoptic_head=dict(
        num_stuff_classes=num_classes,
        criterion=dict(
            loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]))))
