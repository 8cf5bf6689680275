"""MMDetection's local visualizer, safe on empty panoptic predictions."""
from typing import List, Optional

import numpy as np
from mmdet.registry import VISUALIZERS
from mmdet.visualization import DetLocalVisualizer
from mmdet.visualization.palette import get_palette
from mmengine.structures import PixelData


@VISUALIZERS.register_module()
class MaskDINOLocalVisualizer(DetLocalVisualizer):
    """:class:`DetLocalVisualizer` that also draws predictions with nothing
    in them, and takes palette names for semantic maps.

    MMDetection 3.3 fails on two inputs that Mask DINO produces:

    - a panoptic map without any segment (every query below
      ``object_mask_thr`` or overlapping too much: all pixels void), where
      ``_draw_panoptic_seg`` stacks an empty list;
    - a palette given by name ('random', 'coco', ...), which
      ``_draw_sem_seg`` indexes like a list.

    Everything else is drawn by the parent class unchanged.
    """

    def _draw_panoptic_seg(self, image: np.ndarray, panoptic_seg: PixelData,
                           classes: Optional[List[str]],
                           palette: Optional[List]) -> np.ndarray:
        """Draw a panoptic map; an all-void map leaves the image as is."""
        if 'label_names' in panoptic_seg:
            void = panoptic_seg.metainfo.get(
                'ignore_index', len(panoptic_seg.metainfo['label_names']))
        else:
            void = len(classes)
        if (np.asarray(panoptic_seg.sem_seg) == void).all():
            self.set_image(image)
            return self.get_image()
        return super()._draw_panoptic_seg(image, panoptic_seg, classes,
                                          palette)

    def _draw_sem_seg(self, image: np.ndarray, sem_seg: PixelData,
                      classes: Optional[List], palette) -> np.ndarray:
        """Draw a semantic map with the palette resolved to a list."""
        if not isinstance(palette, list):
            palette = get_palette(palette, len(classes))
        return super()._draw_sem_seg(image, sem_seg, classes, palette)
