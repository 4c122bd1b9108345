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
