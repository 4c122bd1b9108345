"""Age-cut sweep: one model per cut point, scored on the true 18 classes, in one table and plot."""
import pandas as pd
import pytest

from fastmask.runners.sweep import plot_sweep, sweep_table


def test_sweep_table_and_plot(tmp_path):
    t = sweep_table({60: dict(valid_f1=0.5, valid_f1_age=0.4, n_valid=3), 57: dict(valid_f1=0.6, valid_f1_age=0.5)})
    assert list(t['age_cut']) == [57, 60] and list(t['valid_f1']) == [0.6, 0.5] and 'n_valid' not in t
    png = plot_sweep(t, tmp_path / 'p.png')
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_sweep_runs_each_cut_on_true_labels(tiny_demo, tmp_path):
    import torch
    from fastmask.io import read_json
    from fastmask.sources.open import open_data
    from fastmask.recipes.registry import override, resolve
    from fastmask.runners.run import run_recipe
    r = override(resolve('sweep_age_cut', quick=True, size=32, epochs=1, bs=16), arch='mobilenetv2_100',
                 age_cuts=(40, 60))
    run = run_recipe(r, tiny_demo, tmp_path, num_workers=0)
    table = pd.read_csv(run / 'sweep.csv')
    assert list(table['age_cut']) == [40, 60] and table['valid_f1'].notna().all()
    assert (run / 'sweep.png').read_bytes()[:4] == b'\x89PNG'
    s = read_json(run / 'summary.json')
    assert s['best_age_cut'] in (40, 60) and s['valid_f1'] == pytest.approx(table['valid_f1'].max())
    truth = open_data(tiny_demo).train.set_index('path')['label']
    for cut in (40, 60):
        sub = run / f'cut{cut}'
        assert torch.load(sub / 'model_all.pth', weights_only=False)['age_cut'] == cut
        vf = pd.read_csv(sub / 'valid_preds.csv')
        assert (vf['label'].to_numpy() == truth.loc[vf['path']].to_numpy()).all()   # scored on the >= 60 truth
        assert read_json(sub / 'summary.json')['valid_f1'] == pytest.approx(float(table.set_index('age_cut').loc[cut, 'valid_f1']))
