from .maskdino_tta import MaskDINOTTAModel, merge_instances, unflip_instances

__all__ = ['MaskDINOTTAModel', 'merge_instances', 'unflip_instances']
