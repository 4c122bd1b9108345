"""`fastmask tune --show`: a study's trials as a table (best first) and Optuna's plots as PNGs."""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from fastmask.plots import save_figure
from fastmask.tools.tune import TuneError, open_storage, open_study, safe_url, study_storage
from fastmask.tools.tunespace import need_optuna

__all__ = ['PLOTS', 'load_study', 'trials_table', 'rich_trials_table', 'study_plots', 'show_study']

#: file name -> optuna.visualization.matplotlib function
PLOTS = {'history.png': 'plot_optimization_history', 'importances.png': 'plot_param_importances',
         'parallel.png': 'plot_parallel_coordinate'}


def load_study(storage: str, study_name: str | None = None):
    "An existing study; without a name, the storage's only study."
    optuna = need_optuna()
    if study_name is None:
        names = optuna.study.get_all_study_names(open_storage(storage, must_exist=True))
        if len(names) != 1: raise TuneError(f"--study-name: {safe_url(storage)} holds {len(names)} studies"
                                            f"{': ' + ', '.join(names) if names else ''}; name one")
        study_name = names[0]
    return open_study(storage, study_name, create=False)


def trials_table(study) -> pd.DataFrame:
    "One row per trial: number, state, value (completed trials only), params, run folder; best first, then the rest by number."
    rows = [dict(number=t.number, state=t.state.name.lower(), value=t.value if t.state.name == 'COMPLETE' else None,
                 params=', '.join(f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}' for k, v in t.params.items()),
                 run_dir=t.user_attrs.get('run_dir', '')) for t in study.trials]
    df = pd.DataFrame(rows, columns=['number', 'state', 'value', 'params', 'run_dir'])
    done = df['value'].notna()
    return pd.concat([df[done].sort_values('value', ascending=False), df[~done].sort_values('number')], ignore_index=True)


def rich_trials_table(df: pd.DataFrame, title: str | None = None):
    "A rich Table of `trials_table` output, states coloured."
    from rich.markup import escape
    from rich.table import Table
    t = Table(title=title, header_style='bold')
    for c in df.columns: t.add_column(c.replace('_', ' '), justify='right' if c in ('number', 'value') else 'left')
    colour = dict(complete='green', running='yellow', pruned='magenta', fail='red', waiting='white')
    for r in df.itertuples(index=False):
        t.add_row(str(r.number), f'[{colour.get(r.state, "white")}]{r.state}[/]',
                  '' if pd.isna(r.value) else f'{r.value:.4f}', escape(r.params), escape(str(r.run_dir)))
    return t


def study_plots(study, folder) -> tuple[list[Path], list[str]]:
    "Write the optimisation history, parameter importances and parallel coordinates PNGs; (files, notes on skipped plots)."
    optuna = need_optuna()
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vm
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done: return [], ['no completed trial yet: no plots']
    varying = any(len({repr(t.params.get(k)) for t in done}) > 1 for k in done[0].params)
    files, notes = [], []
    for fname, fn in PLOTS.items():
        if fname == 'importances.png' and (len(done) < 2 or not varying):
            notes.append(f'{fname} skipped: parameter importances need 2 or more completed trials with different values')
            continue
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # ExperimentalWarning, ylim warnings of constant parameters
            ax = getattr(vm, fn)(study)
        fig = ax.figure if hasattr(ax, 'figure') else ax.flat[0].figure
        try: files.append(save_figure(fig, Path(folder) / fname))
        finally: plt.close(fig)
    return files, notes


def show_study(storage: str | None = None, study_name: str | None = None, out='runs') -> tuple:
    "(study, trials table, PNG files under `out/tune/STUDY/`, notes) of an existing study (default storage: `tune`'s)."
    if storage is None and study_name is None: raise TuneError('--show: needs --study-name or --storage')
    study = load_study(study_storage(storage, out, study_name), study_name)
    files, notes = study_plots(study, Path(out) / 'tune' / study.study_name)
    return study, trials_table(study), files, notes
