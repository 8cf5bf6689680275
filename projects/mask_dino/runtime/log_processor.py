"""A log processor that keeps the 105 Mask DINO loss terms readable."""
import re
from collections import OrderedDict
from typing import Mapping, Optional, Pattern, Sequence, Tuple

from mmdet.registry import LOG_PROCESSORS
from mmengine.runner import LogProcessor

# (group name, regular expression on the un-prefixed loss key); the first
# matching group wins, so denoising terms of auxiliary layers (``d3.dn_*``)
# are counted as denoising, not as auxiliary.
MASKDINO_LOSS_GROUPS = (
    ('dn_loss', r'^(d\d+\.)?dn_loss_'),
    ('aux_loss', r'^d\d+\.loss_'),
    ('enc_loss', r'^enc_loss_'),
)


def group_loss_terms(
    scalars: Mapping[str, float],
    groups: Sequence[Tuple[str, Pattern]],
    prefix: str = ''
) -> Tuple['OrderedDict[str, float]', 'OrderedDict[str, float]']:
    """Replace the loss terms of each group by their sum.

    Args:
        scalars (Mapping[str, float]): Logged values, e.g. ``loss``,
            ``loss_cls``, ``d0.loss_cls``, ``dn_loss_cls``, ``lr``.
        groups (Sequence[tuple[str, Pattern]]): (name, compiled pattern)
            pairs, matched in order against the key without ``prefix``.
        prefix (str): Prefix of the keys (``'train/'`` when the log is
            written with hierarchy); group keys get the same prefix.

    Returns:
        tuple[OrderedDict, OrderedDict]:

        - grouped: ``scalars`` where every key of a group is replaced by
          the group's sum, placed where the group's first key was; keys
          outside every group are kept as they are.
        - members: the replaced ``key: value`` pairs.
    """
    grouped, members = OrderedDict(), OrderedDict()
    for key, value in scalars.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        group = next((g for g, pattern in groups if pattern.search(name)),
                     None)
        if group is None:
            grouped[key] = value
            continue
        members[key] = value
        group_key = prefix + group
        grouped[group_key] = grouped.get(group_key, 0.0) + value
    return grouped, members


@LOG_PROCESSORS.register_module()
class GroupedLossLogProcessor(LogProcessor):
    """:class:`LogProcessor` whose training log line sums loss groups.

    A two-stage Mask DINO logs 105 loss terms per iteration (5 losses for
    the final set, 9 auxiliary sets, the encoder set and the denoising
    twins). The text log shows the total ``loss``, the five terms of the
    final set and one sum per group (``dn_loss``, ``aux_loss``,
    ``enc_loss`` by default), e.g.::

        Iter(train) [ 50/368750]  lr: 1.0000e-04  eta: ...  time: ...
        loss: 96.1  loss_cls: 1.2  loss_mask: 0.9  loss_dice: 2.1
        loss_bbox: 0.4  loss_iou: 0.6  aux_loss: 45.0  enc_loss: 5.3
        dn_loss: 40.6  grad_norm: 3.2

    while the visualizer backends (``LocalVisBackend``'s ``scalars.json``,
    TensorBoard) receive the group sums *and* every individual term. The
    group sums are sums of the smoothed (window-mean) terms, i.e. the
    window means of the per-iteration group sums. Validation and test logs
    are unchanged.

    Args:
        loss_groups (Sequence[tuple[str, str]]): (name, regular expression)
            pairs; a key that matches a pattern (searched in order) is
            counted in that group. Defaults to the Mask DINO groups
            (``dn_loss``: ``dn_loss_*`` and ``d{i}.dn_loss_*``;
            ``aux_loss``: ``d{i}.loss_*``; ``enc_loss``: ``enc_loss_*``).
            An empty sequence gives mmengine's plain log.
        **kwargs: Arguments of :class:`mmengine.runner.LogProcessor`
            (``window_size``, ``by_epoch``, ``custom_cfg``, ...).
    """

    def __init__(self,
                 loss_groups: Sequence[Tuple[str, str]] = MASKDINO_LOSS_GROUPS,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.loss_groups = []
        for item in loss_groups:
            if len(item) != 2:
                raise ValueError(
                    'log_processor.loss_groups entries must be (name, '
                    f'pattern) pairs, got {item!r}')
            name, pattern = item
            self.loss_groups.append((name, re.compile(pattern)))
        # Individual terms removed from the text log during one call of
        # ``get_log_after_iter``; they are given back to the backends.
        self._hidden: Optional[OrderedDict] = None

    def get_log_after_iter(self, runner, batch_idx: int,
                           mode: str) -> Tuple[dict, str]:
        """Format the log of one iteration (see :class:`LogProcessor`).

        Returns:
            tuple[dict, str]: the tag for the visualizer backends (every
            term plus the group sums) and the grouped log string.
        """
        if mode != 'train' or not self.loss_groups:
            return super().get_log_after_iter(runner, batch_idx, mode)
        self._hidden = OrderedDict()
        try:
            tag, log_str = super().get_log_after_iter(runner, batch_idx, mode)
            tag.update(self._hidden)
        finally:
            self._hidden = None
        return tag, log_str

    def _collect_scalars(self,
                         custom_cfg: list,
                         runner,
                         mode: str,
                         reserve_prefix: bool = False) -> dict:
        """Collect the smoothed scalars and, while a training line is being
        formatted, group the loss terms."""
        scalars = super()._collect_scalars(custom_cfg, runner, mode,
                                           reserve_prefix)
        if self._hidden is None:
            return scalars
        prefix = f'{mode}/' if reserve_prefix else ''
        grouped, members = group_loss_terms(scalars, self.loss_groups, prefix)
        # With ``log_with_hierarchy`` the backend tag is collected by a
        # second, prefixed call; keep the members of that call only.
        if reserve_prefix == self.log_with_hierarchy:
            self._hidden.update(members)
        return grouped
