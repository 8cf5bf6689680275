# Official COCO schedule: 368,750 iterations at batch 16 (~50 epochs), lr x0.1
# at 327,778 and 355,092; AdamW 1e-4, wd 0.05, backbone lr x0.1, no decay on
# norms and embeddings (the encoder level_embed is decayed, as official),
# full-model L2 gradient clipping at 0.01.
max_iters = 368750
interval = 5000

embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.0001, weight_decay=0.05, eps=1e-8,
        betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'query_feat': embed_multi,
            'query_embed': embed_multi,
            'label_embedding': embed_multi,
        },
        norm_decay_mult=0.0),
    clip_grad=dict(max_norm=0.01, norm_type=2))

param_scheduler = [
    dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=10),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[327778, 355092],
        gamma=0.1)
]

train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# Official total batch size: 16 (8 GPUs x 2 images).
auto_scale_lr = dict(enable=False, base_batch_size=16)
