"""Recipe specs `name[field=value,...]`: parsed into recipe changes, resolved into variants with their own names."""
import pytest

from fastmask.errors import RecipeError
from fastmask.recipes import get_recipe, list_recipes
from fastmask.recipes.spec import parse_spec, resolve_spec, spec_name, variant


def test_specs_parse_into_recipe_changes():
    assert parse_spec('cpu_split_lite0[bn=train,epochs=2]') == ('cpu_split_lite0', {'bn': 'train', 'epochs': 2})
    assert parse_spec(' cpu_split_lite0 ') == ('cpu_split_lite0', {})
    assert parse_spec('x[task_overrides=age:loss:f1]')[1]['task_overrides'] == (('age', (('loss', 'f1'),)),)
    assert parse_spec('x[freeze_lr=1e-2]')[1] == {'freeze_lr': 0.01}
    for bad in ('a[b', 'a[nofield=1]', 'a[epochs=two]', 'a[task_overrides=age:loss]'):
        with pytest.raises(RecipeError): parse_spec(bad)


def test_variants_get_their_own_name_and_description():
    base = get_recipe('cpu_split_lite0')
    assert variant(base, {}) is base
    v = resolve_spec('cpu_split_lite0[bn=train,seed=3]', size=96, epochs=1)
    assert v.name == 'cpu_split_lite0~bn=train,seed=3' and (v.bn, v.seed, v.size, v.epochs) == ('train', 3, 96, 1)
    assert v.description.startswith(base.description) and 'changed: bn=train, seed=3' in v.description
    assert resolve_spec('cpu_split_lite0[size=192]', size=96).size == 192   # the spec's own settings win
    assert resolve_spec('cpu_split_lite0', size=96).name == 'cpu_split_lite0'
    assert resolve_spec('cpu_fast_lite0[calibrate=age]').name == 'cpu_fast_lite0~calibrate=age'   # a tuple field
    t = resolve_spec('cpu_split_lite0[task_overrides=age:loss:f1]')
    assert t.name == 'cpu_split_lite0~age.loss=f1' and t.for_task('age').loss == 'f1'
    assert t.for_task('mask').rrc_scale == base.for_task('mask').rrc_scale != base.rrc_scale   # the recipe's own kept
    m = resolve_spec('cpu_split_lite0[task_overrides=mask:epochs:2]').for_task('mask')
    assert (m.epochs, m.rrc_scale) == (2, base.for_task('mask').rrc_scale)                  # one task's fields merged
    assert spec_name('cpu_split_lite0[bn=train,  seed=1]') == 'cpu_split_lite0[bn=train, seed=1]'
    with pytest.raises(RecipeError, match='unknown recipe'): resolve_spec('no_such_recipe[seed=1]')


@pytest.mark.parametrize('r', [r for r in list_recipes() if r.members], ids=lambda r: r.name)
def test_every_composite_member_resolves(r):
    for m in r.members: assert resolve_spec(m).name.startswith(parse_spec(m)[0])
