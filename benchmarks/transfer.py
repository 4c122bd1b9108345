"""Transfer learning on real faces: the linear probe against fine-tuned recipes on the same backbone and split.

    python benchmarks/transfer.py [--part utk|mask|practice|cross|all] [--recipes probe_lite0,cpu_split_lite0]
                                  [--set bn=train ...] [--faces 4000] [--persons 1000] [--out runs/bench-transfer]

Data (needs ../shared/data beside the project):
- utk: raw UTKFace crops as a labelled CSV (`--faces` random faces, gender + age), 15% of them held out;
- mask: real masked-face crops (maskfaces/labels.csv), split by source photo;
- practice: a practice set (`fastmask data proxy`, `--persons` training people, adults like the competition) from
  `--practice-faces`: All-Age-Faces and UTKFace together (mixed, the default), or either alone, 200 eval people, person split; the eval people are scored too;
- cross (with `--data-only`): the labels CSVs of the cross-data-set studies (`cross_sets`), paths printed.
Prints one row per (data, recipe): macro F1 per task (18 classes where the data has them), the gain over the probe,
wall time and the load average while it ran. Every figure comes from the run folders' summary.json.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.io import read_json
from fastmask.recipes import parse_set, resolve
from fastmask.runners.run import run_recipe

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


def utk_faces(ages=(1, 116)) -> pd.DataFrame:
    """Every UTKFace crop in the age range, labelled from its name by the toolkit's own parser (`utkface_faces`):
    path, gender (0 male, 1 female), age, race (0 White .. 4 Others, as in the names)."""
    from fastmask.sources.faces import UTK_RACES, utkface_faces
    rows = [(str(f.path), f.gender, f.age, UTK_RACES.index(f.race)) for f in utkface_faces(SHARED / 'utkface' / 'images')[0]
            if ages[0] <= f.age <= ages[1]]
    return pd.DataFrame(rows, columns=['path', 'gender', 'age', 'race'])


def utk_csv(n: int, out: Path, seed: int = 0, ages=(1, 116), exclude: Path | None = None) -> Path:
    """A labels CSV of `n` random UTKFace crops: path, gender (0 male, 1 female), age in years; `exclude`: a labels
    CSV whose faces are left out (held-out faces for runs trained on it, named `...-not-{its stem}.csv`)."""
    df = utk_faces(ages)[['path', 'gender', 'age']]
    if exclude is not None: df = df[~df['path'].isin(set(pd.read_csv(exclude)['path']))]
    df = df.sample(n=min(n, len(df)), random_state=seed).reset_index(drop=True)
    rest = f'-not-{Path(exclude).stem}' if exclude is not None else ''
    csv = out / f'utkface-{len(df)}-s{seed}{rest}.csv'
    csv.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv, index=False)
    return csv


def race_balanced_utk(out: Path, seed: int = 0, ages=(18, 80)) -> Path:
    """UTKFace adults with the same age-group mix within every race (the largest such subset at the overall mix):
    in UTKFace non-white adults are younger (Asian: 48% under 30, White: 18%), a cue a model learns."""
    df = utk_faces(ages)
    g = pd.cut(df['age'], [0, 29, 59, 200], labels=False)
    mix = g.value_counts(normalize=True).sort_index()
    parts = []
    for _, d in df.assign(g=g).groupby('race'):
        n = d['g'].value_counts().reindex(range(3), fill_value=0)
        m = int(min(n[k] / mix[k] for k in range(3)))
        parts += [d[d['g'] == k].sample(n=int(round(m * mix[k])), random_state=seed) for k in range(3)]
    csv = out / f'utkface-adults-race-balanced{"" if seed == 0 else f"-s{seed}"}.csv'
    csv.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(parts).sample(frac=1, random_state=seed)[['path', 'gender', 'age', 'race']].to_csv(csv, index=False)
    return csv


def aaf_halves(out: Path, seed: int = 0) -> tuple[Path, Path]:
    "All-Age-Faces' 5,000 adults in two random halves (absolute paths): train on one, score on the other."
    df = pd.read_csv(SHARED / 'aaf' / 'labels.csv')
    df['path'] = [str((SHARED / 'aaf' / p).resolve()) for p in df['path']]
    df = df.sample(frac=1, random_state=seed).reset_index(drop=True)
    (out / 'aaf').mkdir(parents=True, exist_ok=True)
    half = len(df) // 2
    paths = out / 'aaf' / f'aaf-{half}-a.csv', out / 'aaf' / f'aaf-{len(df) - half}-b.csv'
    df.iloc[:half].to_csv(paths[0], index=False)
    df.iloc[half:].to_csv(paths[1], index=False)
    return paths


def mixed_csv(parts: dict, out: Path, seed: int = 0) -> Path:
    "One labels CSV of several (`{source name: csv}`), genders as male/female, a `source` column, rows shuffled."
    dfs = []
    for name, csv in parts.items():
        d = pd.read_csv(csv)
        if pd.api.types.is_numeric_dtype(d['gender']): d['gender'] = d['gender'].map({0: 'male', 1: 'female'})
        dfs.append(d[['path', 'gender', 'age']].assign(source=name))
    df = pd.concat(dfs).sample(frac=1, random_state=seed)
    csv = out / ('mixed-' + '-'.join(f'{n[:3]}{len(d)}' for n, d in zip(parts, dfs)) + '.csv')
    df.to_csv(csv, index=False)
    return csv


def cross_sets(out: Path) -> dict[str, Path]:
    """The labels CSVs of the studies `cross-mixed-*`: UTKFace adults (3,000 to train, 2,000 others held out), the AAF
    halves, the mix of the UTKFace 3,000 with AAF half a, and race-balanced UTKFace adults."""
    utk = utk_csv(3000, out / 'utk', seed=1, ages=(18, 80))
    held = utk_csv(2000, out / 'utk', seed=7, ages=(18, 80), exclude=utk)
    a, b = aaf_halves(out)
    return dict(utk=utk, utk_held_out=held, aaf_a=a, aaf_b=b, mixed=mixed_csv(dict(utkface=utk, aaf=a), out),
                utk_race_balanced=race_balanced_utk(out / 'utk'))


#: the faces a practice set is built from (`fastmask data proxy --faces ...`): both sets by default, as the studies
#: `cross-mixed*` found that a model trained on both holds up on each (UTKFace alone for the earlier studies' figures)
PRACTICE_FACES = {'mixed': [(SHARED / 'aaf' / 'labels.csv', 'aaf'), (SHARED / 'utkface' / 'images', 'utkface')],
                  'aaf': [(SHARED / 'aaf' / 'labels.csv', 'aaf')], 'utkface': [(SHARED / 'utkface' / 'images', 'utkface')]}


def practice_set(persons: int, out: Path, faces: str = 'mixed') -> Path:
    "A practice set in the competition layout from `PRACTICE_FACES[faces]` (built once; UTKFace-only keeps its old name)."
    d = out / (f'practice-p{persons}' if faces == 'utkface' else f'practice-{faces}-p{persons}')
    if not (d / 'train' / 'train.csv').exists():
        from fastmask.sources.practice import make_proxy
        make_proxy(PRACTICE_FACES[faces], d, persons=persons, eval_persons=200, seed=0)
    return d


def run_one(name: str, data: Path, out: Path, changes: dict, workers: int | None) -> dict:
    "Run one recipe and return its scores, wall time and load average."
    r = resolve(name, **changes)
    t0, load0 = time.time(), os.getloadavg()[0]
    run = run_recipe(r, data, out, num_workers=workers, overrides=changes)
    s = read_json(run / 'summary.json')
    row = dict(recipe=name, minutes=round((time.time() - t0) / 60, 1),
               load=f'{load0:.1f}-{os.getloadavg()[0]:.1f}', run=str(run))
    row.update({k: v for k, v in s.items() if k.startswith(('valid_f1', 'eval_f1')) and isinstance(v, float)})
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--part', default='all', choices=['utk', 'mask', 'practice', 'cross', 'all'])
    ap.add_argument('--recipes', default='probe_lite0,cpu_split_lite0')
    ap.add_argument('--set', dest='sets', action='append', default=[], help='recipe field for every recipe, FIELD=VALUE')
    ap.add_argument('--faces', type=int, default=4000)
    ap.add_argument('--persons', type=int, default=1000)
    ap.add_argument('--practice-faces', default='mixed', choices=list(PRACTICE_FACES), help='the faces of the practice part')
    ap.add_argument('--workers', type=int, default=None)
    ap.add_argument('--out', default='runs/bench-transfer')
    ap.add_argument('--data-only', action='store_true', help="write the part's data (e.g. utkface-4000-s0.csv) and stop")
    a = ap.parse_args()
    out = Path(a.out)
    changes = dict(parse_set(s) for s in a.sets)
    datas = {}
    if a.part in ('utk', 'all'): datas['utk'] = (utk_csv(a.faces, out), dict(crop=0.0, size=160))
    if a.part == 'cross':
        if not a.data_only: ap.error('--part cross writes the data sets only: add --data-only, then run the studies')
        return print('\n'.join(f'{k}: {v}' for k, v in cross_sets(out).items()))
    if a.data_only:
        if a.part in ('practice', 'all'): practice_set(a.persons, out, a.practice_faces)
        return print('\n'.join(str(d) for d, _ in datas.values()))
    if a.part in ('mask', 'all'): datas['mask'] = (SHARED / 'maskfaces' / 'labels.csv', dict(crop=0.0, size=160, tasks=('mask',)))
    if a.part in ('practice', 'all'): datas['practice'] = (practice_set(a.persons, out, a.practice_faces), {})
    rows = []
    for dname, (data, base) in datas.items():
        for name in a.recipes.split(','):
            ch = {**base, **changes}
            if name.startswith('probe') and 'size' in base: ch['size'] = base['size']
            row = dict(data=dname, **run_one(name, data, out / dname, ch, a.workers))
            rows.append(row)
            print(pd.DataFrame([row]).to_string(index=False), flush=True)
    df = pd.DataFrame(rows)
    probe = {d: g.iloc[0] for d, g in df.groupby('data')}
    for c in [c for c in df.columns if c.startswith(('valid_f1', 'eval_f1'))]:
        df[f'{c}_vs_probe'] = [np.round(r[c] - probe[r['data']][c], 4) if c in probe[r['data']] else np.nan
                               for _, r in df.iterrows()]
    print('\n' + df.drop(columns=['run']).to_string(index=False))


if __name__ == '__main__':
    main()
