"""Progress bars: shown in a terminal (or when forced), silent otherwise, never changing what is iterated."""
import pytest

from fastmask.progress import progress, show_progress


def test_quiet_when_not_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv('FASTMASK_PROGRESS', raising=False)
    monkeypatch.setattr('sys.stderr.isatty', lambda: False, raising=False)
    assert not show_progress()
    assert list(progress(range(5), desc='x')) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ''


@pytest.mark.parametrize('env,shown', [('1', True), ('0', False)])
def test_env_forces(monkeypatch, env, shown):
    monkeypatch.setenv('FASTMASK_PROGRESS', env)
    assert show_progress() is shown
    assert list(progress(iter('abc'), total=3, desc='letters')) == ['a', 'b', 'c']


def test_epoch_line_names_its_columns(capsys):
    "Without bars each epoch is one readable line with its column names, not fastai's raw list."
    from types import SimpleNamespace
    from fastcore.foundation import L
    from fastmask.progress import EpochLine
    names = L(['epoch', 'train_loss', 'valid_loss', 'f1_score', 'time'])
    learn = SimpleNamespace(recorder=SimpleNamespace(metric_names=names), n_epoch=3)
    EpochLine(learn, 'gender: ')(L([0, 0.5, 0.25, 0.8, '00:01']))
    assert capsys.readouterr().out == 'gender: epoch 1/3  train_loss 0.5000  valid_loss 0.2500  f1_score 0.8000  time 00:01\n'
