"""The project's end-to-end demo (``make demo``): synthetic data, training
of the tiny model under a time budget, evaluation, pictures and a report
(:mod:`.end_to_end`; ``tools/demo/run_demo.py`` is its command line). Not
imported by :mod:`projects.mask_dino`; import it where it is used."""
from .end_to_end import (CONFIG, CONFIG_DATA_ROOT, PHOTOS, DemoProgressHook,
                         console_warnings_only, environment, fmt, prepare_data,
                         retarget, run_demo, say, scale_schedule, stage,
                         summarise_metrics)

__all__ = [
    'CONFIG', 'CONFIG_DATA_ROOT', 'PHOTOS', 'DemoProgressHook',
    'console_warnings_only', 'environment', 'fmt', 'prepare_data', 'retarget',
    'run_demo', 'say', 'scale_schedule', 'stage', 'summarise_metrics'
]
