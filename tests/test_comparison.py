"""The optimizer comparison: runs its five members (cheap arch, one epoch) and writes the curves and the figure."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fastmask.runners.comparison import plot_curves, read_curves
from fastmask.io import read_json
from fastmask.recipes.registry import resolve
from fastmask.runners.run import run_recipe
from optional import need

MEMBERS = ['optim_adam', 'optim_adamw', 'optim_adamp', 'optim_madgrad', 'optim_madgrad_1e6']


def test_plot_curves_two_panels_one_line_per_member(tmp_path):
    curves = pd.DataFrame({'member': np.repeat(['a', 'b', 'c'], 4), 'epoch': np.tile(range(4), 3),
                           'valid_loss': np.linspace(2, 0.5, 12), 'f1_score': np.linspace(0, 0.8, 12)})
    png = plot_curves(curves, tmp_path / 'fig.png', 'title')
    im = Image.open(png)
    assert im.format == 'PNG' and im.size[0] > 2 * im.size[1] / 1.2  # two panels side by side
    assert not list(tmp_path.glob('.*tmp*'))


def test_read_curves_drops_repeated_headers_and_swa_row(tmp_path):
    (tmp_path / 'metrics_all.csv').write_text('epoch,train_loss,valid_loss,f1_score,accuracy,time\n'
                                              '0,2.0,1.9,0.1,0.2,00:01\n1,1.5,1.4,0.3,0.4,00:01\n'
                                              'epoch,train_loss,valid_loss,f1_score,accuracy,time\n'
                                              'swa,,1.3,0.35,0.4,00:01\n')
    c = read_curves(tmp_path)
    assert c['epoch'].tolist() == [0, 1] and c['valid_loss'].tolist() == [1.9, 1.4]


def test_optimizer_comparison_quick(tiny_demo, tmp_path):
    need('pytorch_optimizer', reason='AdamP and MADGRAD come from pytorch-optimizer (fastmask[optim])')
    ov = dict(quick=True, size=32, epochs=1, arch='mobilenetv2_100')
    out = tmp_path / 'runs'
    run = run_recipe(resolve('optimizer_comparison', **ov), tiny_demo, out, num_workers=0, overrides=ov, log=lambda *_: None)
    s = read_json(run / 'summary.json')
    assert s['status'] == 'finished' and sorted(s['member_f1']) == sorted(MEMBERS)
    curves = pd.read_csv(run / 'curves.csv')
    assert curves['member'].nunique() == 5 and list(curves['member'].unique()) == MEMBERS
    assert curves['valid_loss'].notna().all() and curves['f1_score'].between(0, 1).all()
    # each member's curve is its own run's log
    for m in MEMBERS:
        log = read_curves(s['member_runs'][m])
        np.testing.assert_allclose(curves.loc[curves['member'] == m, 'valid_loss'], log['valid_loss'])
    assert Image.open(run / 'optimizers.png').format == 'PNG'
    assert len({read_json(f"{d}/config.json")['recipe']['opt'] for d in s['member_runs'].values()}) >= 3
