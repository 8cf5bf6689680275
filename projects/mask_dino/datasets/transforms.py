"""Data transforms of the Mask DINO training pipelines."""
from typing import Tuple

from mmcv.transforms import BaseTransform, Compose
from mmdet.registry import TRANSFORMS
from mmseg.datasets.transforms import RandomCrop as MMSegRandomCrop

# Instance annotations a semantic crop would leave stale.
_INSTANCE_KEYS = ('gt_bboxes', 'gt_masks')


@TRANSFORMS.register_module()
class SemSegRandomCrop(MMSegRandomCrop):
    """Random crop of the image and its semantic map, with the category-area
    constraint, for mmdet pipelines.

    This is the crop of the official semantic mapper (detectron2
    ``RandomCrop_CategoryAreaConstraint``): a window of ``crop_size``
    (clipped to the image) is drawn uniformly; with ``cat_max_ratio < 1`` it
    is redrawn (up to 10 times) until at least two classes are present and
    no class covers ``cat_max_ratio`` or more of the non-ignored pixels.
    The released ADE20K and Cityscapes configs use ``cat_max_ratio=1.0``
    (plain random crop).

    mmseg's :class:`~mmseg.datasets.transforms.RandomCrop` draws the window;
    it crops only the maps listed in ``results['seg_fields']``, which mmdet's
    ``LoadAnnotations`` does not write, so this subclass always crops
    ``gt_seg_map`` as well.

    Required Keys:

    - img
    - gt_seg_map (optional; required when ``cat_max_ratio < 1``)

    Modified Keys:

    - img
    - img_shape
    - gt_seg_map (and any other map named in ``seg_fields``)

    Args:
        crop_size (int | tuple[int, int]): Crop size as (h, w) (mmseg
            order, unlike mmdet's ``RandomCrop`` which takes (w, h)).
        cat_max_ratio (float): Largest share of the non-ignored pixels one
            class may occupy in the crop. 1.0 disables the check.
            Defaults to 1.0.
        ignore_index (int): Label excluded from the area check.
            Defaults to 255.
    """

    def transform(self, results: dict) -> dict:
        """Crop ``img`` and the semantic maps with one random window.

        Args:
            results (dict): Result dict of the pipeline.

        Returns:
            dict: The cropped results; ``img_shape`` is the crop size.
        """
        stale = [key for key in _INSTANCE_KEYS if key in results]
        if stale:
            raise ValueError(
                f'{self.__class__.__name__} crops semantic maps only, but '
                f'the results of {results.get("img_path")} hold {stale}; '
                'use mmdet RandomCrop for instance annotations')
        if self.cat_max_ratio < 1. and 'gt_seg_map' not in results:
            raise KeyError(
                f'{self.__class__.__name__} with cat_max_ratio='
                f'{self.cat_max_ratio} needs `gt_seg_map` (missing for '
                f'{results.get("img_path")}); load it with '
                'LoadAnnotations(with_seg=True) first')
        crop_bbox = self.crop_bbox(results)
        results['img'] = self.crop(results['img'], crop_bbox)
        results['img_shape'] = results['img'].shape[:2]
        seg_keys = set(results.get('seg_fields', []))
        if 'gt_seg_map' in results:
            seg_keys.add('gt_seg_map')
        for key in seg_keys:
            results[key] = self.crop(results[key], crop_bbox)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(crop_size={self.crop_size}, '
                f'cat_max_ratio={self.cat_max_ratio}, '
                f'ignore_index={self.ignore_index})')


@TRANSFORMS.register_module()
class LargeScaleJitter(BaseTransform):
    """The official large-scale jitter (LSJ) of the COCO recipes, one step.

    detectron2's ``coco_{instance,panoptic}_new_baseline_dataset_mapper``:
    horizontal flip -> ``ResizeScale`` of ``scale`` by a random factor in
    ``ratio_range`` (aspect kept) -> ``FixedSizeCrop`` of ``scale`` padded
    with ``pad_val`` -> instances left empty dropped (an image left without
    instances stays a training sample, as official). It is run as the
    mmdet transforms that do each step (``RandomFlip``, ``RandomResize``,
    ``RandomCrop``, ``Pad``, ``FilterAnnotations``), in that order, so the
    results and the random draws are theirs; this class only states the
    five steps once for every config that uses them.

    The padding happens here, not in the data preprocessor, so that
    ``img_shape`` is the ``scale`` canvas that the official code normalises
    the GT boxes by (docs/custom_dataset.md, "Keep the training images one
    fixed size").

    Args:
        scale (tuple[int, int]): Canvas (w, h): the resize target at ratio
            1, the crop size and the padded size.
        ratio_range (tuple[float, float]): Range of the random resize
            factor. Defaults to (0.1, 2.0) (official).
        flip_prob (float): Probability of the horizontal flip.
            Defaults to 0.5.
        pad_val (int): Raw image value of the padding (detectron2's
            ``FixedSizeCrop`` pads with 128). Masks pad with 0 and semantic
            maps with 255 (ignored).
        boxes_from_masks (bool): Recompute the boxes from the cropped masks
            and drop instances by mask area (official). False for box-only
            data (no masks loaded): boxes are clipped by the crop and
            dropped when empty. Defaults to True.
    """

    def __init__(self,
                 scale: Tuple[int, int],
                 ratio_range: Tuple[float, float] = (0.1, 2.0),
                 flip_prob: float = 0.5,
                 pad_val: int = 128,
                 boxes_from_masks: bool = True) -> None:
        scale = tuple(scale)
        steps = [
            dict(type='RandomFlip', prob=flip_prob),
            dict(
                type='RandomResize',
                scale=scale,
                ratio_range=tuple(ratio_range),
                keep_ratio=True),
            dict(
                type='RandomCrop',
                crop_size=scale,
                crop_type='absolute',
                recompute_bbox=boxes_from_masks,
                allow_negative_crop=True),
            dict(
                type='Pad',
                size=scale,
                pad_val=dict(img=(pad_val, ) * 3, masks=0, seg=255)),
            dict(
                type='FilterAnnotations',
                min_gt_bbox_wh=(1e-5, 1e-5),
                by_mask=boxes_from_masks,
                keep_empty=False),
        ]
        # Built from mmdet's registry: mmcv's Compose would look the names
        # up in mmcv's, whose RandomCrop and Pad know no boxes or masks.
        self.steps = Compose([TRANSFORMS.build(step) for step in steps])

    def transform(self, results: dict) -> dict:
        """Jitter the image and its annotations.

        Args:
            results (dict): Result dict of the pipeline.

        Returns:
            dict: The results on the ``scale`` canvas.
        """
        return self.steps(results)

    def __repr__(self) -> str:
        steps = ', '.join(repr(t) for t in self.steps.transforms)
        return f'{self.__class__.__name__}({steps})'
