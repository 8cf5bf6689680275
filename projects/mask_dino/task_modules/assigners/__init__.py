from .hybrid_hungarian_assigner import HybridHungarianAssigner

__all__ = ['HybridHungarianAssigner']
