# What the COCO instance and panoptic bases share: the dataset location, the
# dataloader settings (default_loaders.py), the official large-scale jitter
# (coco_lsj_augment.py) and the test-time resize and packing (short side
# 800, long side <= 1333: detectron2's defaults). Each base adds its dataset
# type, annotations and pipelines.
_base_ = ['./default_loaders.py', './coco_lsj_augment.py']

data_root = 'data/coco/'
backend_args = None

coco_test_resize = dict(type='Resize', scale=(1333, 800), keep_ratio=True)
coco_test_pack = dict(
    type='PackDetInputs',
    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
               'scale_factor'))

train_dataloader = dict(
    dataset=dict(data_root=data_root, backend_args=backend_args))
val_dataloader = dict(
    dataset=dict(data_root=data_root, backend_args=backend_args))
test_dataloader = val_dataloader
