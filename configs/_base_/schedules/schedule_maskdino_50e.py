# Official solver (train_net.py build_optimizer, Base-COCO-*.yaml): AdamW,
# lr 1e-4, weight decay 0.05, total batch 16; backbone lr x0.1; no weight
# decay on norm layers (WEIGHT_DECAY_NORM 0) and nn.Embedding weights
# (WEIGHT_DECAY_EMBED 0: query_feat, query_embed, DN label embedding); the
# encoder level_embed and all biases keep 0.05; full-model L2 gradient
# clipping at 0.01. COCO schedule: 368,750 iterations (~50 epochs), lr x0.1
# at 327,778 and 355,092. WARMUP_FACTOR 1.0 (10 iters) means no warm-up.
# AMP (official SOLVER.AMP) is switched on in the COCO task configs.
max_iters = 368750
interval = 5000

embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=0.0001,
        weight_decay=0.05,
        eps=1e-8,
        betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        # A matching key overrides norm_decay_mult: trainable backbone norms
        # (Swin-L, SyncBN) need their own keys (see those configs).
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'query_feat': embed_multi,
            'query_embed': embed_multi,
            'label_embedding': embed_multi,
        },
        norm_decay_mult=0.0,
        # shared modules (the box head) are visited more than once
        bypass_duplicate=True),
    clip_grad=dict(max_norm=0.01, norm_type=2))

param_scheduler = [
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

# Official total batch size 16 (8 GPUs x 2 images): `--auto-scale-lr`
# scales the lr linearly for another total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=16)
