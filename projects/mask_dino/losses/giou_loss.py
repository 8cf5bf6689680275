"""GIoU loss with the official Mask DINO (DETR ``box_ops``) epsilon."""
from typing import Optional

from mmdet.models.losses import GIoULoss
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS
from torch import Tensor

from ..utils.box_ops import box_overlaps


@MODELS.register_module()
class DETRGIoULoss(GIoULoss):
    """mmdet's :class:`GIoULoss` with the epsilon of the official code.

    The official criterion (DETR's ``generalized_box_iou``) divides by
    ``union + eps`` and ``enclose + eps``; mmdet floors the two areas at
    ``eps``. On normalised boxes the two differ by about ``eps / area``
    relative: 1.4e-5 on the losses of the official golden outputs
    (``tests/test_equivalence``), more for small boxes. Weights, reduction,
    ``avg_factor`` and ``loss_weight`` work as in mmdet, except that
    all-zero weights are not short-cut to ``(pred * weight).sum()``: that
    test (``torch.any``) is a host sync, and with the added epsilon finite
    boxes give a finite loss, which zero weights reduce to 0 as well.
    """

    #: :func:`box_overlaps` mode of the epsilon (the criterion reads it)
    eps_mode = 'add'

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Loss of aligned xyxy boxes.

        Args:
            pred (Tensor): Predicted (x1, y1, x2, y2), (n, 4).
            target (Tensor): Target boxes, (n, 4).
            weight (Tensor, optional): Per box (n, ) or (n, 4) (averaged
                over the 4 coordinates, as mmdet does).
            avg_factor (float, optional): Normaliser of the mean.
            reduction_override (str, optional): 'none', 'mean' or 'sum'.

        Returns:
            Tensor: The weighted loss.
        """
        if reduction_override not in (None, 'none', 'mean', 'sum'):
            raise ValueError(
                f'reduction_override must be none, mean or sum, got '
                f'{reduction_override!r}')
        reduction = reduction_override or self.reduction
        if weight is not None and weight.dim() > 1:
            weight = weight.mean(-1)
        loss = 1 - box_overlaps(
            pred,
            target,
            mode='giou',
            is_aligned=True,
            eps=self.eps,
            eps_mode=self.eps_mode)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction,
                                                     avg_factor)
