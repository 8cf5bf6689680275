# The dataloader settings of every real-dataset base (COCO, ADE20K,
# Cityscapes; the official recipes): 2 images per GPU for training (total
# batch 16 on 8 GPUs), sampled without epochs, one at a time for testing.
# Each dataset base adds its `dataset` dicts.
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(test_mode=True))
test_dataloader = val_dataloader
