from .maskdino import MaskDINO

__all__ = ['MaskDINO']
