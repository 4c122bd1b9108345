"""Known label noise of the competition data (reported by several teams) and the opt-in fixes (`--fix-labels`)."""
from __future__ import annotations

import pandas as pd

from fastmask.labels import GENDERS, MASKS, encode

__all__ = ['GENDER_FLIPPED', 'MASK_SWAPPED', 'NOISY_IDS', 'noise_reason', 'noisy_people', 'apply_fixes']

#: people whose gender is recorded the wrong way round
GENDER_FLIPPED = ('006359', '006360', '006361', '006362', '006363', '006364', '001498-1', '004432')
#: people whose `incorrect_mask` and `normal` photos are swapped
MASK_SWAPPED = ('000020', '004418', '005227')
NOISY_IDS = GENDER_FLIPPED + MASK_SWAPPED


def noise_reason(pid: str) -> str | None:
    "What is known to be wrong with person `pid`, or None."
    if pid in GENDER_FLIPPED: return 'known label noise: gender is flipped (--fix-labels corrects it)'
    if pid in MASK_SWAPPED: return 'known label noise: incorrect_mask and normal are swapped (--fix-labels corrects it)'
    return None


def noisy_people(ids) -> list[str]:
    "The known noisy person ids among `ids`, sorted."
    return sorted(set(map(str, ids)) & set(NOISY_IDS))


def apply_fixes(df: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    "Fix the known noisy people of a training DataFrame; return the fixed copy and one record per change."
    df = df.copy()
    if 'person' not in df.columns: return df, []
    pid = df['person'].astype(str)
    changes = []
    if 'gender' in df.columns:
        for p in noisy_people(pid[pid.isin(GENDER_FLIPPED)]):
            rows = pid == p
            old = int(df.loc[rows, 'gender'].iloc[0])
            df.loc[rows, 'gender'] = 1 - df.loc[rows, 'gender'].astype(int)
            changes.append(dict(person=p, field='gender', old=GENDERS[old], new=GENDERS[1 - old], rows=int(rows.sum())))
    if 'mask' in df.columns:
        for p in noisy_people(pid[pid.isin(MASK_SWAPPED)]):
            rows = (pid == p) & df['mask'].isin([1, 2])
            if not rows.any(): continue
            df.loc[rows, 'mask'] = 3 - df.loc[rows, 'mask'].astype(int)
            changes.append(dict(person=p, field='mask', old=f'{MASKS[1]}<->{MASKS[2]}', new='swapped back',
                                rows=int(rows.sum())))
    if changes and 'label' in df.columns and {'mask', 'gender', 'age_group'} <= set(df.columns):
        df['label'] = encode(df['mask'].to_numpy(), df['gender'].to_numpy(), df['age_group'].to_numpy())
    return df, changes
