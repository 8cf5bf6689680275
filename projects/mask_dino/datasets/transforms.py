"""Data transforms of the Mask DINO training pipelines."""
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
