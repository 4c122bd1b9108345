"""`fastmask study`: members trained once then reused, the table (csv, md, png), failures recorded, named studies."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.runners.run import is_finished
from fastmask.errors import RecipeError
from fastmask.recipes import get_recipe, resolve
from fastmask.recipes.spec import parse_spec
from fastmask.tools.study import STUDIES, register_study, run_study, study_members

TINY = dict(epochs=1, size=32)
MEMBERS = ['baseline_mobilenetv2', 'split_mobilenetv2']


def run_folders(out) -> dict:
    "Every run folder under `out` (but the study tables) with the mtime of its summary.json."
    return {d: (d / 'summary.json').stat().st_mtime_ns for m in out.iterdir() if m.name != 'study'
            for d in m.iterdir() if d.is_dir()}


@pytest.fixture(scope='module')
def first(tiny_demo, tmp_path_factory):
    "A two-member study of tiny quick recipes, run once: (runs folder, study folder, log lines)."
    out, logs = tmp_path_factory.mktemp('study') / 'runs', []
    dest = run_study(MEMBERS, tiny_demo, out, TINY, quick=True, log=logs.append)
    return out, dest, logs


def test_first_run_trains_and_writes_the_table(first, tiny_demo):
    out, dest, logs = first
    assert dest == out / 'study' / f'baseline_mobilenetv2+split_mobilenetv2@{tiny_demo.name}'   # members @ data
    df = pd.read_csv(dest / 'study.csv')
    assert df['recipe'].tolist() == MEMBERS and (df['status'] == 'trained').all()
    assert df['valid_f1'].between(0, 1).all() and df['eval_f1'].between(0, 1).all()  # the demo has eval truth
    assert df['valid_f1_age'].notna().all() and df['wall_time_s'].gt(0).all()
    assert df.loc[1, 'report'] == get_recipe('split_mobilenetv2').report
    assert all(is_finished(d) for d in df['run_dir']) and len(run_folders(out)) == 2
    md = (dest / 'study.md').read_text().splitlines()
    from fastmask.tools.studytable import portable
    assert f'- data: `{portable(tiny_demo)}`' in md and any(line.startswith('- overrides: ') and 'epochs=1' in line for line in md)
    cmd = next(line for line in md if line.startswith('- regenerate:'))
    assert 'fastmask study baseline_mobilenetv2 split_mobilenetv2' in cmd and '--quick --epochs 1 --size 32' in cmd
    rows = [line for line in md if line.startswith('| ')]
    assert len(rows) == 4 and rows[0].startswith('| recipe | reproduces |') and set(rows[1]) == set('| -')
    assert rows[2].startswith('| baseline_mobilenetv2 |') and '| trained |' in rows[3]
    with Image.open(dest / 'study.png') as im: assert im.format == 'PNG' and im.size[0] > 300
    assert sum('training' in line for line in logs) == 2


def test_second_run_reuses_finished_members(first, tiny_demo):
    out, dest, _ = first
    before = run_folders(out)
    old = pd.read_csv(dest / 'study.csv')
    res = CliRunner().invoke(app, ['study', *MEMBERS, '--data', str(tiny_demo), '--out', str(out), '--quick',
                                   '--epochs', '1', '--size', '32', '--workers', '0'])
    assert res.exit_code == 0, res.output
    assert run_folders(out) == before  # no new run folder, no summary rewritten
    df = pd.read_csv(dest / 'study.csv')
    assert (df['status'] == 'reused').all() and df['run_dir'].tolist() == old['run_dir'].tolist()
    assert df['valid_f1'].tolist() == old['valid_f1'].tolist()
    assert 'training' not in res.output and '| reused |' in res.output
    assert sorted(p.name for p in (out / 'study').iterdir()) == [dest.name]  # swapped in, no temporary folders left


def test_same_members_on_other_data_keep_their_own_table(first, tiny_demo, tmp_path):
    "The folder is the study @ the data: another data set's table sits beside the first, which is left as it was."
    import shutil
    out, dest, _ = first
    before = (dest / 'study.csv').read_bytes()
    other = tmp_path / 'other-faces'
    shutil.copytree(tiny_demo, other)
    dest2 = run_study(MEMBERS, other, out, TINY, quick=True, log=lambda *_: None)
    assert dest2 == out / 'study' / 'baseline_mobilenetv2+split_mobilenetv2@other-faces' and dest2 != dest
    assert (dest / 'study.csv').read_bytes() == before and (dest2 / 'study.csv').is_file()
    assert '- data: `' in (dest2 / 'study.md').read_text() and 'other-faces' in (dest2 / 'study.md').read_text()


def test_name_chooses_the_folder_and_a_bad_name_is_refused_first(first, tiny_demo):
    out, dest, _ = first
    args = ['study', *MEMBERS, '--data', str(tiny_demo), '--out', str(out), '--quick', '--epochs', '1', '--size', '32',
            '--workers', '0']
    res = CliRunner().invoke(app, [*args, '--name', 'my-table'])
    assert res.exit_code == 0, res.output
    md = (out / 'study' / 'my-table' / 'study.md').read_text()
    cmd = next(line for line in md.splitlines() if line.startswith('- regenerate:'))
    assert '--name my-table' in cmd and '| reused |' in md
    before = sorted(p.name for p in (out / 'study').iterdir())
    for bad in ('../elsewhere', '', ' x'):
        res = CliRunner().invoke(app, [*args, '--name', bad])
        assert res.exit_code == 1 and 'Traceback' not in res.output, res.output
        assert res.output.strip().splitlines()[-1].startswith('error: --name') and 'not a folder name' in res.output
    assert sorted(p.name for p in (out / 'study').iterdir()) == before and 'training' not in res.output


def test_failing_member_is_recorded_and_the_study_goes_on(tiny_demo, tmp_path):
    "The pseudo-label recipe needs eval images, which a labels CSV lacks; the next member still runs; exit 1."
    from fastmask.sources.open import open_data
    train = open_data(tiny_demo).train
    csv = tmp_path / 'labels.csv'
    train[['path', 'mask', 'gender', 'age', 'person']].to_csv(csv, index=False)
    out = tmp_path / 'runs'
    res = CliRunner().invoke(app, ['study', 'top_pseudo_effnet_b0', 'baseline_mobilenetv2', '--data', str(csv),
                                   '--out', str(out), '--quick', '--epochs', '1', '--size', '32', '--workers', '0'])
    assert res.exit_code == 1 and 'Traceback' not in res.output
    assert res.output.strip().splitlines()[-1].startswith('error: ') and '1 member(s) failed: top_pseudo_effnet_b0' in res.output
    dest = out / 'study' / 'top_pseudo_effnet_b0+baseline_mobilenetv2@labels'
    df = pd.read_csv(dest / 'study.csv', keep_default_na=False)
    assert df['status'].tolist() == ['failed', 'trained']
    assert 'pseudo-labels eval images' in df.loc[0, 'error'] and '\n' not in df.loc[0, 'error']
    assert df.loc[0, 'run_dir'] == '' and not list((out / 'top_pseudo_effnet_b0').glob('*'))   # refused: no folder left
    assert 'eval_f1' not in df.columns  # a labels CSV has no eval truth
    assert any(line.startswith('| top_pseudo_effnet_b0 |') and 'failed: ' in line
               for line in (dest / 'study.md').read_text().splitlines())


def test_unknown_recipe_fails_before_training(tiny_demo, tmp_path):
    with pytest.raises(RecipeError, match="unknown recipe 'no_such_recipe'"):
        run_study(['baseline_mobilenetv2', 'no_such_recipe'], tiny_demo, tmp_path, quick=True)
    assert not any(tmp_path.iterdir())
    res = CliRunner().invoke(app, ['study', 'no_such_recipe', '--data', str(tiny_demo), '--out', str(tmp_path)])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1 and 'no_such_recipe' in res.output
    res = CliRunner().invoke(app, ['study', 'baseline_mobilenetv2', '--data', str(tiny_demo), '--out', str(tmp_path),
                                   '--arch', 'no_such_arch'])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1 and 'no_such_arch' in res.output
    assert not any(tmp_path.iterdir())


def test_named_studies_list_and_registry():
    for name, s in STUDIES.items():
        assert s['description'] and all(get_recipe(parse_spec(m)[0]) for m in s['members'])  # known recipes
        for m in s['members']: resolve(parse_spec(m)[0], **parse_spec(m)[1])             # valid settings
    assert study_members('transfer') == ('transfer', STUDIES['transfer']['members'], STUDIES['transfer']['description'])
    assert 'probe_lite0' in STUDIES['transfer']['members'] and 'cpu_split_lite0' in STUDIES['transfer']['members']
    assert 'sweep_age_cut' in study_members('report')[1] and 'ensemble_final' in study_members('report')[1]
    res = CliRunner().invoke(app, ['study', '--list'])
    assert res.exit_code == 0 and 'transfer' in res.output and 'split_effnet_lite0' in res.output
    register_study('later', ['probe_lite0', 'baseline_effnet_lite0'], 'added later')
    try:
        assert study_members(['later', 'split_effnet_lite0'])[1] == ('probe_lite0', 'baseline_effnet_lite0',
                                                                     'split_effnet_lite0')
        with pytest.raises(ValueError): register_study('later', [])
    finally: STUDIES.pop('later')


def test_members_repeated_over_seeds_are_averaged():
    "Members that differ only in seed or split_seed form one variant: their mean and spread, in first-seen order."
    from fastmask.tools.studytable import markdown as _markdown, seed_means
    df = pd.DataFrame(dict(recipe=['probe_lite0', 'x[epochs=6,split_seed=1]', 'probe_lite0[split_seed=1]',
                                   'x[split_seed=2,epochs=6]', 'x[epochs=3]', 'x[epochs=6,seed=4]'],
                           status=['trained', 'trained', 'reused', 'trained', 'trained', 'failed'],
                           valid_f1_mask=[0.8, 0.9, 0.7, 0.95, 0.5, None]))
    m = seed_means(df)
    assert m['variant'].tolist() == ['probe_lite0', 'x[epochs=6]', 'x[epochs=3]'] and m['runs'].tolist() == [2, 2, 1]
    assert m['valid_f1_mask'].tolist() == [0.75, 0.925, 0.5]                     # the failed member is left out
    assert m.loc[0, 'valid_f1_mask_std'] == round(pd.Series([0.8, 0.7]).std(), 4) and np.isnan(m.loc[2, 'valid_f1_mask_std'])
    md = _markdown(df.assign(description='', report='', error=''), 's', '', 'd', {}, 'cmd', Path('.'))
    assert '| x[epochs=6] | 2 | 0.9250 ± 0.0354 |' in md
    assert 'Mean over seeds' not in _markdown(df.iloc[[0, 4]].assign(description='', report='', error=''), 's', '',
                                                'd', {}, 'cmd', Path('.'))    # nothing repeated: no second table


def test_study_folder_names():
    from fastmask.tools.study import StudyError, study_folder
    assert study_folder('a+b', 'utk') == 'a+b@utk' and study_folder('a', 'utk', ['aaf', 'x']) == 'a@utk@on-aaf+x'
    assert study_folder('a', 'utk', ['aaf'], given='cross-utk-aaf') == 'cross-utk-aaf'
    long = study_folder('m' * 90, 'd' * 40, ['e' * 30])
    assert len(long) == 109 and long != study_folder('m' * 90, 'd' * 40, ['f' * 30])   # hashed, still distinct
    with pytest.raises(StudyError, match='not a folder name'): study_folder('a', 'utk', given='a/b')
