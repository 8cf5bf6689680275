"""The model zoo metadata (model-index.yml -> configs/metafile.yml), read
the way OpenMMLab tooling reads it: the schema checks run with PyYAML
only, the search checks through openmim's own ``mim search`` machinery and
its command line, on the checkout and on an installed wheel (skipped when
openmim is not installed)."""
import glob
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

MODEL_INDEX = osp.join(REPO, 'model-index.yml')
WEIGHTS_BASE = ('https://github.com/IDEA-Research/detrex-storage/releases/'
                'download/maskdino-v0.1.0/')
TASK_CONFIGS = [
    'maskdino_r50_coco_instance', 'maskdino_swin-l_coco_instance',
    'maskdino_r50_coco_panoptic', 'maskdino_swin-l_coco_panoptic',
    'maskdino_r50_ade20k_semantic', 'maskdino_r50_cityscapes_semantic'
]
# The official figures (IDEA-Research/MaskDINO model zoo), per model:
# metric -> value.
OFFICIAL = {
    'maskdino_r50_coco_instance': {
        'mask AP': 46.3,
        'box AP': 51.7
    },
    'maskdino_swin-l_coco_instance': {
        'mask AP': 52.3,
        'box AP': 59.0
    },
    'maskdino_r50_coco_panoptic': {
        'PQ': 53.0,
        'mask AP': 48.8,
        'box AP': 44.3,
        'mIoU': 60.6
    },
    'maskdino_swin-l_coco_panoptic': {
        'PQ': 58.3,
        'mask AP': 50.6,
        'box AP': 56.2,
        'mIoU': 67.5
    },
    'maskdino_r50_ade20k_semantic': {
        'mIoU': 48.7
    },
    'maskdino_r50_cityscapes_semantic': {
        'mIoU': 79.8
    },
}


def load_metafiles():
    """Collections and models of every metafile the index imports."""
    with open(MODEL_INDEX) as f:
        index = yaml.safe_load(f)
    collections, models = [], []
    for rel in index['Import']:
        with open(osp.join(REPO, rel)) as f:
            meta = yaml.safe_load(f)
        collections += meta.get('Collections', [])
        models += meta.get('Models', [])
    return collections, models


@pytest.fixture(scope='module')
def metafile():
    collections, models = load_metafiles()
    return {c['Name']: c for c in collections}, {m['Name']: m for m in models}


def test_every_task_config_is_indexed(metafile):
    _, models = metafile
    assert sorted(models) == sorted(TASK_CONFIGS)
    for name, model in models.items():
        assert model['Config'] == f'configs/{name}.py'
        assert osp.isfile(osp.join(REPO, model['Config']))


def test_collection_has_paper_architecture_and_resources(metafile):
    collections, models = metafile
    (collection, ) = collections.values()
    assert collection['Paper']['URL'] == 'https://arxiv.org/abs/2206.02777'
    assert collection['Paper']['Title'].startswith('Mask DINO: Towards')
    assert 'Mask DINO' in collection['Metadata']['Architecture']
    assert 'A100' in collection['Metadata']['Training Resources']
    assert all(m['In Collection'] == collection['Name']
               for m in models.values())


def test_results_are_the_official_figures(metafile):
    _, models = metafile
    for name, model in models.items():
        figures = {}
        for result in model['Results']:
            assert result['Task'] and result['Dataset']
            figures.update(result['Metrics'])
        assert figures == OFFICIAL[name], name
        assert model['Results Source'].startswith('official model zoo')


def test_weights_are_the_official_files_with_a_conversion(metafile):
    _, models = metafile
    for name, model in models.items():
        url = model['Weights']
        assert url.startswith(WEIGHTS_BASE) and url.endswith('.pth')
        assert model['Converted From']['Weights'] == url
        command = model['Conversion'].split()
        assert command[:2] == [
            'python', 'tools/model_converters/maskdino2mmdet.py'
        ]
        assert command[2] == url[len(WEIGHTS_BASE):]
        assert command[3] == f'checkpoints/{name}.pth'
        assert command[4:] == ['--config', model['Config']]
        # every official file name carries its headline figure
        assert re.search(r'\d+\.\d', command[2])


# ---------------------------------------------------------------- openmim
@pytest.fixture
def mim_search(monkeypatch):
    """openmim's search module, reading this repository's model index.

    ``mim search PACKAGE`` loads ``<site-packages>/<top-level module>/
    model-index.yml`` of an installed package; the index is read from the
    repository here, so the test does not depend on how (or whether) the
    project is installed.
    """
    search = pytest.importorskip('mim.commands.search')
    from modelindex.load_model_index import load

    index = load(MODEL_INDEX)
    monkeypatch.setattr(search, 'load_metadata', lambda *a, **k: index)
    return search


def test_modelindex_builds_every_model(mim_search):
    from modelindex.load_model_index import load

    index = load(MODEL_INDEX)
    index.build_models_with_collections()
    assert sorted(m.name for m in index.models) == sorted(TASK_CONFIGS)
    assert [c.name for c in index.collections] == ['Mask DINO']


def test_mim_search_lists_the_model_zoo(mim_search):
    from click.testing import CliRunner

    result = CliRunner().invoke(mim_search.cli, ['mask-dino-mmdet'])
    assert result.exit_code == 0, result.output
    for name in TASK_CONFIGS:
        assert f'config id: {name}' in result.output


def test_mim_search_filters(mim_search):
    info = mim_search.get_model_info

    table = info('mask-dino-mmdet', filter_conditions='mask_ap>50')
    assert sorted(table.index) == [
        'maskdino_swin-l_coco_instance', 'maskdino_swin-l_coco_panoptic'
    ]
    table = info('mask-dino-mmdet', training_datasets=['cityscapes'])
    assert list(table.index) == ['maskdino_r50_cityscapes_semantic']
    table = info(
        'mask-dino-mmdet',
        configs=['maskdino_r50_coco_panoptic'],
        shown_fields=['pq', 'weight'])
    row = table.loc['maskdino_r50_coco_panoptic']
    assert row['coco/pq'] == 53.0
    assert row['weight'].startswith(WEIGHTS_BASE)
    table = info('mask-dino-mmdet', models=['mask dino'])
    assert len(table) == len(TASK_CONFIGS)


# ----------------------------------------------- mim on real installations
def run_mim_search(cwd, env=None):
    """``python -m mim search mask-dino-mmdet`` in ``cwd``; its stdout."""
    pytest.importorskip('mim')
    proc = subprocess.run(
        [sys.executable, '-m', 'mim', 'search', 'mask-dino-mmdet'],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_mim_dir_links_the_model_index_configs_and_tools():
    from mask_dino_mmdet import MIM_DIR
    for item in ('model-index.yml', 'configs', 'tools'):
        path = osp.join(MIM_DIR, item)
        assert osp.islink(path)
        assert osp.realpath(path) == osp.join(REPO, item)


@pytest.mark.integration  # subprocess
def test_mim_search_on_the_checkout():
    """An editable install is found through the checkout's egg-info."""
    if not glob.glob(osp.join(REPO, '*.egg-info')):
        pytest.skip('the checkout is not pip-installed in editable mode')
    out = run_mim_search(REPO)
    for name in TASK_CONFIGS:
        assert f'config id: {name}' in out


@pytest.mark.integration
def test_mim_search_on_an_installed_wheel(tmp_path):
    """Build a wheel, install it into a fresh directory and search it from
    elsewhere: the index, configs and tools are copies inside the wheel."""
    pytest.importorskip('mim')
    wheels, target = tmp_path / 'wheels', tmp_path / 'site'
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    subprocess.run(
        pip + ['wheel', '-q', '--no-deps', '--no-build-isolation', REPO,
               '-w', str(wheels)],
        check=True, timeout=600, capture_output=True)
    wheel, = wheels.glob('*.whl')
    subprocess.run(
        pip + ['install', '-q', '--no-deps', '--target', str(target),
               str(wheel)],
        check=True, timeout=600, capture_output=True)
    mim_dir = target / 'mask_dino_mmdet' / '.mim'
    assert not (mim_dir / 'configs').is_symlink()
    assert (mim_dir / 'configs' / 'maskdino_r50_coco_instance.py').is_file()
    assert (mim_dir / 'tools' / 'train.py').is_file()
    env = dict(os.environ, PYTHONPATH=str(target))
    out = run_mim_search(str(tmp_path), env)
    for name in TASK_CONFIGS:
        assert f'config id: {name}' in out
