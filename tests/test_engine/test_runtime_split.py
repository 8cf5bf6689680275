"""The model package imports no training runtime; the configs import it."""
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from projects.mask_dino.runtime import compat


# Run in a fresh interpreter: this test session has imported the runtime.
PROBE = f'''
import json, sys
from mmengine.runner.checkpoint import CheckpointLoader

def facts():
    return dict(
        modules=sorted(m for m in sys.modules
                       if m.startswith(('projects.mask_dino.runtime',
                                        'projects.mask_dino.engine'))),
        safe_loader=getattr(CheckpointLoader._schemes[''],
                            {compat._WRAPPED_MARK!r}, False))

import projects.mask_dino
out = dict(package=facts())
from mmengine.config import Config
Config.fromfile('configs/maskdino_tiny_synthetic_instance.py')
out['config'] = facts()
print(json.dumps(out))
'''


@pytest.mark.integration  # subprocess
def test_model_package_leaves_runtime_to_the_configs():
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, '-c', PROBE],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    # importing the model package changes nothing in mmengine's loading
    assert facts['package'] == dict(modules=[], safe_loader=False)
    # the config's custom_imports bring the runtime (not the tools' helpers)
    assert 'projects.mask_dino.runtime' in facts['config']['modules']
    assert not any(
        m.startswith('projects.mask_dino.engine')
        for m in facts['config']['modules'])
    assert facts['config']['safe_loader'] is True
