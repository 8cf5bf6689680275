from .local_visualizer import MaskDINOLocalVisualizer

__all__ = ['MaskDINOLocalVisualizer']
