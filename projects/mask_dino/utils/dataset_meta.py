"""Class names and palette of a config's test dataset."""
from typing import Optional

from mmengine.config import Config, ConfigDict

META_KEYS = ('classes', 'thing_classes', 'stuff_classes', 'palette')


def test_dataset_cfg(cfg: Config) -> ConfigDict:
    """The innermost dataset config of the test (else val) dataloader."""
    dataset = None
    for loader in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        if dataset:
            break
    if not dataset:
        raise ValueError('the config has no test_dataloader.dataset: cannot '
                         'name the classes')
    while 'dataset' in dataset and 'type' in dataset.get('dataset', {}):
        dataset = dataset['dataset']  # wrappers (e.g. ConcatDataset)
    return dataset


def _dataset_class(dataset_type: str) -> Optional[type]:
    """The registered class of ``dataset_type`` (``scope.Name`` allowed)."""
    if '.' in dataset_type:
        scope, name = dataset_type.split('.', 1)
        registry = __import__(
            f'{scope}.registry', fromlist=['DATASETS']).DATASETS
    else:
        from mmdet.registry import DATASETS as registry
        name = dataset_type
    return registry.get(name)


def dataset_meta_from_config(cfg: Config, num_classes: int) -> dict:
    """``dataset_meta`` (classes, thing/stuff classes, palette) of the
    config's test dataset, without reading any annotation file.

    The names come from the dataset's ``metainfo`` in the config, else from
    the dataset class's ``METAINFO`` (mmdet, or mmseg for ``mmseg.*``).

    Args:
        cfg (Config): A full config (with ``test_dataloader``).
        num_classes (int): Number of classes the model predicts.

    Returns:
        dict: The keys of :data:`META_KEYS` that the dataset defines;
        palette colours as tuples.

    Raises:
        ValueError: If no test/val dataset or class names are found, or
            their number differs from ``num_classes``.
    """
    dataset = test_dataset_cfg(cfg)
    metainfo = dict(dataset.get('metainfo') or {})
    dataset_type = dataset.get('type', '')
    if 'classes' not in metainfo:
        dataset_cls = _dataset_class(dataset_type)
        if dataset_cls is None:
            raise ValueError(f'unknown dataset type {dataset_type!r}: add '
                             "metainfo=dict(classes=...) to the config's "
                             'test dataset')
        metainfo = {**dataset_cls.METAINFO, **metainfo}
    classes = metainfo.get('classes')
    if not classes or len(classes) != num_classes:
        raise ValueError(
            f'the test dataset ({dataset_type}) names '
            f'{len(classes) if classes else 0} classes but the model has '
            f'{num_classes}')
    return {
        k: [tuple(x) if isinstance(x, (list, tuple)) else x
            for x in metainfo[k]]
        for k in META_KEYS if k in metainfo
    }
