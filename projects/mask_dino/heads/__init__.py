from .maskdino_fusion_head import MaskDINOFusionHead  # noqa: F401
from .maskdino_head import MaskDINOHead  # noqa: F401
