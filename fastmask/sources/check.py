"""`fastmask data check` and `--skip-bad`: the names of the check report, the image checks and data preparation.

The readers (`competition`, `labelled`) collect the layout and CSV problems in lenient mode; `report.check_data`
adds the image checks (`images`); `prepare.prepare_data` turns a checked data set into the `DataSource` of a run.
"""
from fastmask.sources.competition import PHOTO_STEMS
from fastmask.sources.images import check_image, check_images
from fastmask.sources.prepare import Prepared, prepare_data
from fastmask.sources.problems import Problem, Problems
from fastmask.sources.report import CheckReport, DataCheckError, check_data

__all__ = ['Problem', 'Problems', 'CheckReport', 'DataCheckError', 'Prepared', 'check_image', 'check_images',
           'check_data', 'prepare_data', 'PHOTO_STEMS']
