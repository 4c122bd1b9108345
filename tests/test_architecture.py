"""The package's shape: no import cycles (function-level imports included), registries are leaves, layers hold."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / 'fastmask'


def modules() -> dict[str, Path]:
    "Dotted module name -> file, for every module and package of fastmask."
    out = {}
    for f in PKG.rglob('*.py'):
        parts = list(f.relative_to(PKG.parent).with_suffix('').parts)
        if parts[-1] == '__init__': parts = parts[:-1]
        out['.'.join(parts)] = f
    return out


def imports(name: str, f: Path, known) -> set[str]:
    "The fastmask modules that module `name` imports anywhere in its source (top level or inside functions)."
    pkg = name if f.name == '__init__.py' else name.rpartition('.')[0]
    out = set()
    for n in ast.walk(ast.parse(f.read_text())):
        if isinstance(n, ast.ImportFrom):
            base = n.module or ''
            if n.level:
                parent = pkg.split('.')[:len(pkg.split('.')) - n.level + 1]
                base = '.'.join(parent + ([n.module] if n.module else []))
            if not base.startswith('fastmask'): continue
            for a in n.names:
                sub = f'{base}.{a.name}'
                out.add(sub if sub in known else base)
        elif isinstance(n, ast.Import):
            out |= {a.name for a in n.names if a.name.startswith('fastmask')}
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, f, mods) for m, f in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    "Strongly connected components of more than one module (Tarjan), i.e. the import cycles."
    index, low, stack, on, out = {}, {}, [], set(), []
    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v); on.add(v)
        for w in sorted(g[v]):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in sorted(g):
        if v not in index: visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert cycles({'a': {'b'}, 'b': set()}) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


@pytest.mark.parametrize('registry', ['fastmask.recipes.registry', 'fastmask.runners.registry'])
def test_registries_import_no_plugins(registry):
    "A registry imports none of the modules that register into it."
    deps = graph()[registry]
    assert not {d for d in deps if d.startswith(('fastmask.runners.', 'fastmask.recipes.catalogue'))} - {registry}


LAYERS = ['errors', 'io', 'rundir', 'labels', 'runtime', 'progress', 'runinfo', 'runs', 'plots', 'sources', 'data',
          'models', 'losses', 'optim', 'callbacks', 'inference', 'recipes', 'runspec', 'runners', 'tools', 'app', 'options', 'cli']
ALLOWED_UP = {('inference.predict', 'runners.registry')}   # the leaf registry of prediction hooks


def _layer(mod: str) -> int:
    head = mod.split('.')[1] if '.' in mod else mod
    return LAYERS.index(head) if head in LAYERS else len(LAYERS)


def test_lower_layers_never_import_higher_ones():
    bad = []
    for m, deps in graph().items():
        if m == 'fastmask' or m == 'fastmask.__main__': continue
        for d in deps:
            pair = (m.removeprefix('fastmask.'), d.removeprefix('fastmask.'))
            if _layer(d) > _layer(m) and pair not in ALLOWED_UP: bad.append(pair)
    assert bad == []


def test_lookups_do_not_depend_on_what_was_imported():
    "A fresh process finds every recipe and every runner kind from the registries alone."
    code = ('from fastmask.runners.registry import PROVIDERS, get_runner\n'
            'from fastmask.recipes.registry import get_recipe\n'
            'assert all(callable(get_runner(k)) for k in PROVIDERS)\n'
            "get_recipe('kfold_effnet_b3'); get_recipe('ensemble_final'); print('ok')")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr[-2000:]
