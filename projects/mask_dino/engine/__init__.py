"""Config loading shared by the command-line tools (``tools/train.py``,
``tools/test.py``, ``tools/demo/image_demo.py``). The training-runtime
parts are in :mod:`projects.mask_dino.runtime`."""
from .tool_config import enable_tta, load_tool_config, merge_cfg_options

__all__ = ['enable_tta', 'load_tool_config', 'merge_cfg_options']
