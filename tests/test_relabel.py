"""`--relabel FILE`: a reviewed relabel file changes the labels the learner sees, is recorded, and bad files are one line."""
import hashlib

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.io import read_json
from fastmask.labels import decode, encode
from fastmask.sources.competition import add_labels
from fastmask.sources.relabel import RelabelError, apply_relabel

STEMS = [('mask1', 0), ('incorrect_mask', 1), ('normal', 2)]


def _frame(root):
    "Four people (male, 35) with three photos each, in the competition layout's naming."
    rows = [(str(root / 'train' / 'images' / f'{p}_male_Asian_35' / f'{s}.jpg'), p, s, m, 0, 35)
            for p in ('000001', '000002', '000003', '000004') for s, m in STEMS]
    return add_labels(pd.DataFrame(rows, columns=['path', 'person', 'photo', 'mask', 'gender', 'age']))


def test_apply_relabel_changes_people_and_photos(tmp_path):
    root = tmp_path / 'data'
    df = _frame(root)
    f = tmp_path / 'relabel.csv'
    f.write_text('task,person,path,given,label\n'
                 'gender,000001,,male,female\n'
                 'age,000002,,30-59,>=60\n'
                 'age,000003,,30-59,24\n'
                 f'mask,000002,train/images/000002_male_Asian_35/incorrect_mask.jpg,incorrect,not_wear\n'
                 f'mask,000002,{root}/train/images/000002_male_Asian_35/normal.jpg,not_wear,incorrect\n'
                 'gender,000003,,male,\n'                          # empty label: keep
                 'gender,000004,,male,male\n')                     # no change: not counted
    new, rec = apply_relabel(df, f, root)
    by = new.set_index('path')
    p = lambda pid, s: str(root / 'train' / 'images' / f'{pid}_male_Asian_35' / f'{s}.jpg')
    assert (new.loc[new['person'] == '000001', 'gender'] == 1).all()
    assert (new.loc[new['person'] == '000002', 'age_group'] == 2).all() and (new.loc[new['person'] == '000002', 'age'] == 60).all()
    assert (new.loc[new['person'] == '000003', 'age'] == 24).all() and (new.loc[new['person'] == '000003', 'age_group'] == 0).all()
    assert by.loc[p('000002', 'incorrect_mask'), 'mask'] == 2 and by.loc[p('000002', 'normal'), 'mask'] == 1   # swapped
    assert by.loc[p('000002', 'mask1'), 'mask'] == 0
    assert (new['label'] == encode(new['mask'], new['gender'], new['age_group'])).all()
    unchanged = new['person'] == '000004'
    pd.testing.assert_frame_equal(new[unchanged], df[unchanged])
    assert (df['gender'] == 0).all() and (df['age'] == 35).all()              # the input is untouched
    assert rec['file'] == str(f.resolve()) and rec['sha256'] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert rec['changes'] == 5 == len(rec['label_changes'])
    assert rec['label_changes'][0] == dict(row=2, task='gender', key='000001', rows=3, old='male', new='female')


BAD = [('task,person\ngender,000001\n', 'missing column(s) label'),
       ('task,label\ngender,female\n', 'missing column(s) person or path'),
       ('task,person,label\ngender,000001,female\ngender,999999,female\n', "row 3: unknown person '999999'"),
       ('task,path,label\nmask,train/images/nope/normal.jpg,wear\n', "row 2: unknown photo 'train/images/nope/normal.jpg'"),
       ('task,person,label\ngender,000001,robot\n', "row 2: 'robot' is not a gender"),
       ('task,person,label\nage,000001,200\n', 'row 2: age 200 out of range'),
       ('task,person,label\nrace,000001,Asian\n', "row 2: unknown task 'race'"),
       ('task,person,path,label\nmask,000001,,wear\n', 'row 2: a mask relabel needs a path')]


@pytest.mark.parametrize('text,msg', BAD)
def test_bad_relabel_file_is_one_line(tiny_demo, tmp_path, text, msg):
    f = tmp_path / 'relabel.csv'
    f.write_text(text)
    r = CliRunner().invoke(app, ['recipe', 'baseline_mobilenetv2', '--data', str(tiny_demo), '--out', str(tmp_path / 'runs'),
                                 '--relabel', str(f)])
    err = r.stderr.strip()
    assert r.exit_code == 1 and len(err.splitlines()) == 1 and 'Traceback' not in err, r.output
    assert err.startswith(f'error: {f}') and msg in err
    assert not (tmp_path / 'runs').exists()                                     # refused before any run folder


def test_missing_relabel_file(tmp_path):
    with pytest.raises(RelabelError, match='relabel file not found'): apply_relabel(_frame(tmp_path), tmp_path / 'no.csv', tmp_path)


def test_recipe_trains_on_relabelled_data_and_records_it(tiny_demo, tmp_path):
    from fastmask.sources.check import prepare_data
    from fastmask.data.block import person_split
    from fastmask.sources.open import open_data
    from fastmask.recipes import resolve
    from fastmask.runners.train import build_learner
    train = open_data(tiny_demo).train.reset_index(drop=True)
    r = resolve('baseline_mobilenetv2', quick=True, size=32, epochs=1, bs=16)
    tr, va = person_split(train, r.valid_pct, r.split_seed)
    vp, tp = train['person'][va[0]], train['person'][tr[0]]                     # a validation and a training person
    t_rows = train[train['person'] == tp].set_index('photo')
    f = tmp_path / 'relabel.csv'
    f.write_text('task,person,path,label\n'
                 f"gender,{vp},,{'male' if train['gender'][va[0]] else 'female'}\n"
                 f"gender,{tp},,{'male' if t_rows['gender'].iloc[0] else 'female'}\n"
                 f"mask,,{t_rows.loc['incorrect_mask', 'path']},not_wear\n"
                 f"mask,,{t_rows.loc['normal', 'path']},incorrect\n")
    args = ['recipe', r.name, '--quick', '--size', '32', '--epochs', '1', '--bs', '16', '--data', str(tiny_demo),
            '--out', str(tmp_path / 'runs'), '--workers', '0', '--relabel', str(f)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / 'runs' / r.name).iterdir()
    rel = read_json(run / 'config.json')['relabel']
    assert rel['file'] == str(f.resolve()) and rel['sha256'] == hashlib.sha256(f.read_bytes()).hexdigest() and rel['changes'] == 4
    def valid_gender():
        v = pd.read_csv(run / 'valid_preds.csv', dtype={'person': str})
        v = v[v['person'] == vp]
        assert (decode(v['label'].to_numpy())[1] == v['gender']).all()
        return set(v['gender'])
    assert valid_gender() == {1 - train['gender'][va[0]]}                       # the validation labels are the new ones
    src, _ = prepare_data(tiny_demo, relabel=f)                                 # what the learner of the run saw
    ds = build_learner(r, src, 'all').dls.train_ds
    seen = dict(zip(ds.items['path'], (int(ds.tls[1][i]) for i in range(len(ds)))))
    m, g, _ = decode(np.array([seen[t_rows.loc[s, 'path']] for s in ('mask1', 'incorrect_mask', 'normal')]))
    assert list(m) == [0, 2, 1] and set(g) == {1 - t_rows['gender'].iloc[0]}
    (run / 'summary.json').unlink()                                             # `resume` applies the same file again
    res = CliRunner().invoke(app, ['resume', str(run), '--workers', '0'])
    assert res.exit_code == 0, res.output
    assert valid_gender() == {1 - train['gender'][va[0]]}
    (run / 'summary.json').unlink()
    f.write_text(f.read_text() + f'age,{vp},,24\n')                            # a changed file is refused
    res = CliRunner().invoke(app, ['resume', str(run)])
    assert res.exit_code == 1 and 'relabel file' in res.stderr and 'changed' in res.stderr
