"""The runner the configs select with ``runner_type``."""
import copy
from typing import Union

from mmengine.config import Config, ConfigDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .dist_utils import setup_cpu_distributed
from .robust_dataset import wrap_train_dataset


# mmengine's root registry: mmdet's tools/train.py looks the runner up there
# before any default scope is set.
@RUNNERS.register_module()
class MaskDINORunner(Runner):
    """:class:`~mmengine.runner.Runner` that applies the config's runtime
    options itself, so that every tool building it from the config
    (``tools/train.py``, MMDetection's own ``tools/train.py``,
    ``mim train``) trains the same way:

    - ``skip_bad_samples`` wraps the training dataset in
      :class:`~.robust_dataset.SkipBadSamplesDataset` with those options
      (see :func:`~.robust_dataset.wrap_train_dataset`);
    - with a launcher but without CUDA, the gloo process group is started
      (see :func:`~.dist_utils.setup_cpu_distributed`).

    Built directly (``MaskDINORunner(...)``) it is a plain ``Runner``.
    """

    @classmethod
    def from_cfg(cls, cfg: Union[Config, ConfigDict, dict]) -> Runner:
        """Build the runner from ``cfg`` (not changed) after applying the
        runtime options above to a copy of it."""
        cfg = copy.deepcopy(cfg)
        wrap_train_dataset(cfg)
        setup_cpu_distributed(cfg, cfg.get('launcher', 'none'))
        return super().from_cfg(cfg)
