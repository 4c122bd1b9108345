"""Recipes: the registry (`registry.py`, plain data that imports no runner) and the catalogue that fills it.

Importing any part of this package registers the whole catalogue, so a lookup never depends on which modules
happen to have been imported.
"""
from fastmask.recipes import catalogue  # noqa: F401  (registers every recipe)
from fastmask.recipes.registry import (QUICK, RECIPES, SPLIT_TASKS, Recipe, get_recipe, list_recipes, override, parse_set,
                                       quick, register, resolve)
from fastmask.recipes.spec import parse_spec, resolve_spec, spec_name, variant

__all__ = ['Recipe', 'RECIPES', 'QUICK', 'SPLIT_TASKS', 'register', 'get_recipe', 'list_recipes', 'quick', 'override',
           'resolve', 'parse_set', 'parse_spec', 'resolve_spec', 'spec_name', 'variant']
