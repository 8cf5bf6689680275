# Mask DINO R50, COCO instance segmentation (official
# maskdino_R50_bs16_50ep_3s_dowsample1_2048: 46.3 mask AP / 51.7 box AP).
_base_ = [
    './_base_/models/maskdino_r50.py',
    './_base_/datasets/coco_instance_lsj.py',
    './_base_/schedules/schedule_maskdino_50e.py',
    './_base_/default_runtime.py'
]
image_size = (1024, 1024)
model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(
            type='BatchFixedSizePad',
            size=image_size,
            img_pad_value=0,
            pad_mask=True,
            mask_pad_value=0,
            pad_seg=False)
    ]))
