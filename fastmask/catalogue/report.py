"""Recipes that reproduce the report's experiments."""
from ..recipes import Recipe, register

register(Recipe(
    name='baseline_mobilenetv2',
    description="The report's first baseline: one 18-class MobileNetV2, the report's transforms",
    arch='mobilenetv2_100', tasks=('all',), size=224, bs=64, epochs=10, lr=1e-3, patience=3))
