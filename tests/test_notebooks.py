"""Every notebook in nbs/ runs top to bottom on the demo data (so they never go stale) and is stored without outputs."""
import ast
import json
import re
import time
from pathlib import Path

import pytest
from optional import need

NBS = sorted((Path(__file__).resolve().parents[1] / 'nbs').glob('*.ipynb'))
nbformat = need('nbformat', reason='notebook tests need the dev extra (nbformat, nbclient, ipykernel)')


def test_there_are_notebooks():
    assert {p.name for p in NBS} >= {'01_data.ipynb', '02_lr_find.ipynb', '03_ensemble.ipynb'}


@pytest.mark.parametrize('path', NBS, ids=[p.stem for p in NBS])
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == 'code']
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.parametrize('path', NBS, ids=[p.stem for p in NBS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbclient = need('nbclient', reason='notebook tests need nbclient')
    need('ipykernel', reason='notebook tests need ipykernel')
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    monkeypatch.setenv('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    # the kernel is this Python (ipykernel's native spec), working in a scratch folder
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}})
    client.execute()  # raises CellExecutionError on a cell's error: what is left to check is what the cells showed
    print(f'{path.name}: {time.time() - t0:.1f} s')
    OUTPUTS[path.stem](nb)


def _cell(nb, text: str):
    "The first code cell whose source contains `text`."
    (cell,) = [c for c in nb.cells if c.cell_type == 'code' and text in c.source][:1]
    return cell


def _text(cell) -> str:
    "What a cell printed (stdout, not warnings) and the plain-text value of its last expression (not displays)."
    return ''.join(o.get('text', '') if o.output_type == 'stream' and o.get('name') == 'stdout' else
                   o.get('data', {}).get('text/plain', '') if o.output_type == 'execute_result' else ''
                   for o in cell.outputs)


def _images(cell) -> int: return sum('image/png' in o.get('data', {}) for o in cell.outputs)


def _data_outputs(nb):
    m = re.search(r'(\d+) training photos of (\d+) people; (\d+) eval images', _text(_cell(nb, 'training photos of')))
    assert m, 'the data cell printed no counts'
    photos, people, evals = map(int, m.groups())
    assert photos == 7 * people and people > 0 and evals > 0          # seven photos a person, eval images there
    batches = _cell(nb, 'show_batch')
    assert [ln.split(' ')[0] for ln in _text(batches).splitlines()] == ['mask', 'gender', 'age']
    assert _images(batches) == 3                                       # one batch shown per task
    assert _images(_cell(nb, "'18 classes'")) == 1
    ages = _cell(nb, 'age_group(ages')
    assert _images(ages) == 1
    shares = [ast.literal_eval(ln.split(':', 1)[1].strip()) for ln in _text(ages).splitlines() if ln.startswith('cut ')]
    assert len(shares) == 2 and all(abs(sum(d.values()) - 1) < 0.01 for d in shares)
    assert shares[1]['>=60'] >= shares[0]['>=60']                    # the report's cut 57 makes more '>= 60'


def _lr_find_outputs(nb):
    sugg = _text(_cell(nb, 'lr_find('))
    m = re.search(r'valley=([0-9.e+-]+)', sugg)
    assert 'SuggestedLRs' in sugg and m and 1e-7 < float(m.group(1)) < 10
    assert _images(_cell(nb, 'lr_find(')) == 1                        # the loss-vs-lr plot
    assert _images(_cell(nb, 'fit_one_cycle')) == 1                   # the loss plot
    loss, f1, acc = ast.literal_eval(re.sub(r'np\.float\d+\(([^)]*)\)', r'\1', _text(_cell(nb, 'learn.validate()'))))
    assert loss > 0 and 0 <= acc <= 1 and 0 <= f1 <= 1                # [valid_loss, F1, accuracy], in that order


def _ensemble_outputs(nb):
    dirs = [Path(d) for d in re.findall(r"Path\('([^']+)'\)", _text(_cell(nb, 'run_recipe(')))]
    assert len(dirs) == 2 and len(set(dirs)) == 2
    for d in dirs:                                                     # two finished runs of two epochs each
        assert json.loads((d / 'summary.json').read_text())['status'] == 'finished'
        assert len((d / 'metrics_all.csv').read_text().splitlines()) == 1 + 2
    assert all(d.name in _text(_cell(nb, 'runs_table(runs)')) for d in dirs)
    assert _images(_cell(nb, 'display(Image')) == 1
    table = _text(_cell(nb, "table['soft vote']"))
    assert 'soft vote' in table and all(d.name in table for d in dirs)
    f1 = ast.literal_eval(_text(nb.cells[-1]))
    assert list(f1) == [d.name for d in dirs] + ['soft vote']
    import numpy as np
    from fastmask.inference.scoring import eval_truth, macro_f1
    from fastmask.sources.open import open_data
    (data,) = re.findall(r"Path\('([^']+)'\)", _text(_cell(nb, 'demo_dir(')))  # the notebook's data
    truth, probs = eval_truth(open_data(data)), [np.load(d / 'eval_probs.npy') for d in dirs]
    assert truth is not None and len(truth) == len(probs[0])
    for name, p in zip(list(f1), probs + [np.mean(probs, 0)]):         # each run's eval F1, and the vote's
        assert f1[name] == pytest.approx(macro_f1(truth, p.argmax(1)), abs=1e-4)


#: what each notebook must have shown (a cell that ran but printed nothing, or the wrong thing, fails here)
OUTPUTS = {'01_data': _data_outputs, '02_lr_find': _lr_find_outputs, '03_ensemble': _ensemble_outputs}


def test_every_notebook_has_output_checks():
    assert {p.stem for p in NBS} == set(OUTPUTS)
