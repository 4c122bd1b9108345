"""Every notebook in nbs/ runs top to bottom on the demo data (so they never go stale) and is stored without outputs."""
import time
from pathlib import Path

import pytest

NBS = sorted((Path(__file__).resolve().parents[1] / 'nbs').glob('*.ipynb'))
nbformat = pytest.importorskip('nbformat', reason='notebook tests need the dev extra (nbformat, nbclient, ipykernel)')


def test_there_are_notebooks():
    assert {p.name for p in NBS} >= {'01_data.ipynb', '02_lr_find.ipynb', '03_ensemble.ipynb'}


@pytest.mark.parametrize('path', NBS, ids=[p.stem for p in NBS])
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == 'code']
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.parametrize('path', NBS, ids=[p.stem for p in NBS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbclient = pytest.importorskip('nbclient', reason='notebook tests need nbclient')
    pytest.importorskip('ipykernel', reason='notebook tests need ipykernel')
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    monkeypatch.setenv('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    # the kernel is this Python (ipykernel's native spec), working in a scratch folder
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if o.output_type == 'error']
    assert not errors
    print(f'{path.name}: {time.time() - t0:.1f} s')
