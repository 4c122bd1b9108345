"""Data preparation for training: the check (refusing bad data unless `--skip-bad`), label fixes, a relabel file."""
from __future__ import annotations

from dataclasses import dataclass, field

from fastmask.io import write_csv
from fastmask.labels import DEFAULT_AGE_CUT
from fastmask.rundir import RunDir
from fastmask.sources.labelfix import apply_fixes
from fastmask.sources.relabel import apply_relabel
from fastmask.sources.report import CheckReport, DataCheckError, check_data

__all__ = ['Prepared', 'prepare_data']


@dataclass
class Prepared:
    "What `prepare_data` did: the check, the label fixes, what was skipped, the data fingerprint."
    report: CheckReport
    skip_bad: bool = False
    fixes: list = field(default_factory=list)
    fix_labels: bool = False
    fingerprint: str = ''
    relabel: dict | None = None

    def config(self) -> dict:
        "The entries of a run's config.json."
        return dict(data_fingerprint=self.fingerprint, skip_bad=self.skip_bad, fix_labels=self.fix_labels,
                    label_fixes=self.fixes, data_check=self.report.summary(),
                    skipped=len(self.report.skipped()) if self.skip_bad else 0, relabel=self.relabel)

    def write(self, run_dir) -> None:
        "Write `skipped.csv` into the run folder when `--skip-bad` left files out."
        sk = self.report.skipped()
        if self.skip_bad and len(sk): write_csv(RunDir(run_dir).skipped, sk)


def prepare_data(data, skip_bad: bool = False, fix_labels: bool = False, age_cut: int | None = None, cache: bool = True,
                 relabel=None):
    "Check `data`, refuse it (one line) when bad unless `skip_bad`; apply the label fixes and a relabel file if asked."
    report = check_data(data, cache, age_cut or DEFAULT_AGE_CUT)
    if not report.ok and not skip_bad: raise report.refusal()
    src = report.source  # the lenient reader's rows less the images that do not load: the good rows when skipping
    if src.train.empty:
        raise DataCheckError(f"{report.root}: no usable {'rows' if report.kind == 'csv' else 'training photos'} left "
                             f"after skipping bad data")
    fixes, rel = [], None
    if fix_labels: src.train, fixes = apply_fixes(src.train)
    if relabel:  # a reviewed relabel file (sources/relabel.py), e.g. from `fastmask data noise`
        src.train, rel = apply_relabel(src.train, relabel, report.root, age_cut or DEFAULT_AGE_CUT)
    return src, Prepared(report, skip_bad, fixes, fix_labels, report.fingerprint(list(src.train['path'])), rel)
