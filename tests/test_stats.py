"""Data overview: counts agree with the labels, the PNG is written, partial labels still draw."""
import numpy as np
import pandas as pd
from PIL import Image

from fastmask.labels import age_group
from fastmask.sources.competition import read_train
from fastmask.sources.stats import data_counts, data_stats, plot_stats


def test_counts_match_labels(tiny_demo):
    df = read_train(tiny_demo)
    c = data_counts(df)
    assert c['size'] == {'photos': len(df), 'persons': 16}
    assert c['mask'] == {'wear': 80, 'incorrect': 16, 'not_wear': 16}
    assert sum(c['gender'].values()) == len(df) and c['gender']['female'] == int((df['gender'] == 1).sum())
    for cut in (60, 57):
        assert list(c[f'age (cut {cut})'].values()) == np.bincount(age_group(df['age'].to_numpy(), cut), minlength=3).tolist()
        assert sum(c[f'18 classes (cut {cut})'].values()) == len(df)
    moved = int(((df['age'] >= 57) & (df['age'] < 60)).sum())
    assert c['age (cut 57)']['>=60'] - c['age (cut 60)']['>=60'] == moved


def test_png_written_and_cli_prints(tiny_demo, tmp_path):
    from typer.testing import CliRunner
    from fastmask.cli import app
    out = tmp_path / 'stats.png'
    r = CliRunner().invoke(app, ['data', 'stats', str(tiny_demo), '--out', str(out)])
    assert r.exit_code == 0, r.output
    assert 'not_wear' in r.output and 'wear/male/<30' in r.output
    with Image.open(out) as im: assert im.format == 'PNG' and im.size[0] > 600
    assert not list(tmp_path.glob('.stats.png*'))


def test_mask_only_data_still_draws(tmp_path):
    df = pd.DataFrame({'path': ['a', 'b', 'c'], 'person': ['1', '1', '2'], 'mask': [0, 2, 1]})
    c = data_counts(df)
    assert set(c) == {'mask', 'size'} and c['mask'] == {'wear': 1, 'incorrect': 1, 'not_wear': 1}
    assert plot_stats(df, tmp_path / 'm.png').stat().st_size > 1000


def test_stats_without_png(tiny_demo):
    counts, png = data_stats(tiny_demo)
    assert png is None and counts['size']['persons'] == 16
