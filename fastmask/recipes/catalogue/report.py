"""Recipes that reproduce the report's experiments (figures from ../shared/docs/experiments.md).

Where the report gives no value (epochs, learning rate of the task models, SWA start) the recipes use the
catalogue's defaults: Adam, one-cycle at lr 1e-3, 10 epochs, batch 64, 224 px from a 350 px centre crop. They keep
the report's normalisation statistics (`norm='report'`), single linear head and train-mode BatchNorm, so that a
reproduction stays faithful; `fastmask recipe NAME --norm pretrained` and the other transfer options override them.
"""
from dataclasses import replace

from fastmask.labels import REPORT_AGE_CUT
from fastmask.recipes.registry import SPLIT_TASKS, Recipe, register

register(Recipe(
    name='baseline_mobilenetv2',
    description="The report's first baseline: one 18-class MobileNetV2, the report's transforms",
    arch='mobilenetv2_100', tasks=('all',), size=224, bs=64, epochs=10, lr=1e-3, patience=3, norm='report'))

# --- task-split models: mask (balanced 1:1:1 sampler), gender, age (>= 60 from 57); cross entropy ---------------
SPLIT = Recipe(
    name='split_mobilenetv2',
    description="Mask, gender and age MobileNetV2 models (balanced mask sampler, age cut 57, CE) combined into 18 classes",
    arch='mobilenetv2_100', tasks=SPLIT_TASKS, size=224, bs=64, epochs=10, lr=1e-3, loss='ce',
    balanced_mask=True, age_cut=REPORT_AGE_CUT, norm='report', report='feasibility baseline (no figure)')
register(SPLIT)

SPLIT_ARCHS = {  # recipe suffix: (timm name, display name, report figure)
    'effnet_b0': ('efficientnet_b0', 'EfficientNet-B0', ''),
    'effnet_b1': ('efficientnet_b1', 'EfficientNet-B1', ''),
    'effnet_b2': ('efficientnet_b2', 'EfficientNet-B2', ''),
    'effnet_b3': ('efficientnet_b3', 'EfficientNet-B3', 'LB 0.69 (single model)'),
    'densenet121': ('densenet121', 'DenseNet-121', 'LB 0.67 (single model)'),
    'resnext50': ('resnext50_32x4d', 'ResNeXt-50 (32x4d)', 'LB 0.68 (single model)'),
}
for suffix, (arch, label, fig) in SPLIT_ARCHS.items():
    register(replace(SPLIT, name=f'split_{suffix}', arch=arch, report=fig,
                     description=f"Mask, gender and age {label} models (balanced mask sampler, age cut 57, CE) "
                                 f"combined into 18 classes"))

# --- SWA: one-cycle for 10 epochs' worth, then 5 epochs at a constant rate whose weights are averaged -------------
SWA = dict(epochs=15, swa_start=10, swa_lr=2e-4)
SWA_FIGS = {'effnet_b3': 'SWA: CV 0.72 -> 0.74, LB 0.69 -> 0.71',
            'densenet121': 'ensemble member (single model LB 0.67)',
            'resnext50': 'ensemble member (single model LB 0.68)'}
for suffix, fig in SWA_FIGS.items():
    arch, label, _ = SPLIT_ARCHS[suffix]
    register(replace(SPLIT, name=f'swa_{suffix}', arch=arch, report=fig, **SWA,
                     description=f"split_{suffix} with SWA: weights averaged over epochs 11-15 at constant lr 2e-4, "
                                 f"BatchNorm statistics recomputed"))

# --- loss experiments on the age model (mask and gender keep cross entropy) --------------------------------------
register(replace(SPLIT, name='f1loss_age', arch='efficientnet_b3', report='failed: LB 0.4',
                 task_overrides=(('age', (('loss', 'f1'),)),),
                 description='split_effnet_b3 whose age model minimises 1 - soft macro F1 (the report dropped it)'))
register(replace(SPLIT, name='cef1_age', arch='efficientnet_b3', report='what top teams used (no figure)',
                 task_overrides=(('age', (('loss', 'ce_f1'), ('loss_params', (('f1_weight', 0.5),)))),),
                 description='split_effnet_b3 whose age model minimises 0.5 * CE + 0.5 * soft F1'))

# --- optimizer study: one 18-class EfficientNet-B3, batch 64, no scheduler, SWA, early stopping patience 10 -------
OPTIM = Recipe(
    name='optim_adam',
    description='Optimizer study: one 18-class EfficientNet-B3, Adam lr 1e-5 constant, SWA from epoch 11, '
                'early stopping on valid loss (patience 10)',
    arch='efficientnet_b3', tasks=('all',), size=224, bs=64, epochs=30, lr=1e-5, schedule='constant', opt='adam',
    age_cut=REPORT_AGE_CUT, swa_start=10, patience=10, monitor='valid_loss', norm='report',
    report='converged in 10-13 epochs, valid loss ~0.5')
register(OPTIM)
register(replace(OPTIM, name='optim_adamw', opt='adamw', wd=1e-2,
                 description=OPTIM.description.replace('Adam lr', 'AdamW (decoupled wd 1e-2) lr')))
register(replace(OPTIM, name='optim_adamp', opt='adamp', description=OPTIM.description.replace('Adam lr', 'AdamP lr')))
register(replace(OPTIM, name='optim_madgrad', opt='madgrad', report='converged faster, valid loss stayed above Adam',
                 description=OPTIM.description.replace('Adam lr', 'MADGRAD lr')))
register(replace(OPTIM, name='optim_madgrad_1e6', opt='madgrad', lr=1e-6,
                 report='little different from MADGRAD at 1e-5',
                 description=OPTIM.description.replace('Adam lr 1e-5', 'MADGRAD lr 1e-6')))
