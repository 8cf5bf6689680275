from .box_ops import (  # noqa: F401
    mask_boxes_to_anchor_logits, masks_to_boxes, masks_to_boxes_bitmask,
    masks_to_boxes_mask2box)
from .point_ops import point_sample_rows  # noqa: F401
from .dataset_meta import dataset_meta_from_config  # noqa: F401
from .config_ops import pass_down  # noqa: F401
