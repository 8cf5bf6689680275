default_scope = 'mmdet'
# The model package registers the model and data parts; the runtime package
# the runner, hooks, log processor, bf16 optimizer wrapper and the safe
# checkpoint loader (projects/mask_dino/runtime/). A config adding modules
# keeps both: imports=[*_base_.custom_imports.imports, 'my.module'].
custom_imports = dict(
    imports=['projects.mask_dino', 'projects.mask_dino.runtime'],
    allow_failed_imports=False)
# Applies skip_bad_samples (below) and CPU distributed set-up with any tool
# that builds the runner from this config (tools/train.py, mmdet's
# tools/train.py, mim train).
runner_type = 'MaskDINORunner'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # atomic writes, last good checkpoint never deleted first, clear error
    # when resuming a checkpoint of another class count (issue 9)
    checkpoint=dict(
        type='SafeCheckpointHook',
        by_epoch=False,
        interval=5000,
        max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'),
    # torch seeded per iteration: --resume continues like an unbroken run
    iter_seed=dict(type='IterationSeedHook'),
    # stop at the first NaN/Inf loss (iteration, term, images), saving nothing
    nonfinite_loss=dict(type='NonFiniteLossHook'),
    # log the count of skipped bad samples, name a dying worker's sample
    sample_guard=dict(type='SampleGuardHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

# TensorBoard: add dict(type='TensorboardVisBackend') here, or train with
# --cfg-options visualizer.vis_backends.0.type=TensorboardVisBackend
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='MaskDINOLocalVisualizer',  # draws empty panoptic maps too
    vis_backends=vis_backends,
    name='visualizer')
# The text log sums the loss terms per group (final-set terms, aux_loss,
# enc_loss, dn_loss); every term still goes to the vis backends.
log_processor = dict(
    type='GroupedLossLogProcessor', window_size=50, by_epoch=False)

# MaskDINORunner wraps the training dataset in SkipBadSamplesDataset with
# these options: unreadable/invalid samples are reported and skipped (count
# in the log). Strict mode (raise instead):
#   --cfg-options skip_bad_samples.strict=True
# and skip_bad_samples=None removes the wrapper.
skip_bad_samples = dict(
    strict=False, validate=True, max_consecutive_failures=50)

log_level = 'INFO'
load_from = None
resume = False
