"""Helpers of the command-line tools: config loading (``tools/train.py``,
``tools/test.py``, ``tools/demo/image_demo.py``; exported here), and, imported
from their modules by the tools alone, the train switches and the runner
(:mod:`.tool_options`, which imports :mod:`projects.mask_dino.runtime`)
and the speed tools' device options (:mod:`.device_args`)."""
from .tool_config import enable_tta, load_tool_config, merge_cfg_options

__all__ = ['enable_tta', 'load_tool_config', 'merge_cfg_options']
