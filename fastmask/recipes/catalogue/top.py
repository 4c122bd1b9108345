"""Recipes of what the best public entries did beyond the report: k-fold, CutMix of halves, F1+focal, pseudo-labels."""
from fastmask.recipes.registry import Recipe, register

register(Recipe(
    name='kfold_effnet_b3',
    description='EfficientNet-B3, 18 classes, 5-fold by person (stratified by gender x age); folds soft-voted, OOF F1',
    kind='kfold', arch='efficientnet_b3', tasks=('all',), size=224, bs=64, epochs=10, lr=1e-3, patience=3,
    folds=5, fold_kind='train'))

register(Recipe(
    name='top_cutmix_effnet_b3',
    description='EfficientNet-B3, 18 classes, CutMix of vertical halves with a >= 60 person forced into each pair',
    arch='efficientnet_b3', tasks=('all',), size=224, bs=64, epochs=10, lr=1e-3, patience=3,
    cutmix='halves', cutmix_old=True, cutmix_p=1.0))

register(Recipe(
    name='top_f1focal_resnext50',
    description='ResNeXt-50, 18 classes, loss 0.4 F1 + 0.6 focal, weighted sampler, age cut at 58 (0.766 F1 entry)',
    arch='resnext50_32x4d', tasks=('all',), size=224, bs=64, epochs=10, lr=1e-3, patience=3, age_cut=58,
    loss='f1_focal', loss_params=(('f1_weight', 0.4), ('gamma', 2.0)), sampler='weighted'))

register(Recipe(
    name='top_pseudo_effnet_b0',
    description='EfficientNet-B0 per task, label smoothing, weighted sampler, Adam 6e-5 fixed; retrained with '
                'pseudo-labelled eval images (confidence >= 0.9)',
    kind='pseudo', arch='efficientnet_b0', tasks=('mask', 'gender', 'age'), size=224, bs=64, epochs=10, lr=6e-5,
    schedule='constant', loss='label_smoothing', patience=3,
    sampler='weighted', pseudo_threshold=0.9))

register(Recipe(
    name='sweep_age_cut',
    description="EfficientNet-B0, 18 classes, trained with '>= 60' labelled from 57, 58, 59 and 60: F1 per cut point",
    kind='sweep_age_cut', arch='efficientnet_b0', tasks=('all',), size=224, bs=64, epochs=10, lr=1e-3, patience=3,
    age_cuts=(57, 58, 59, 60)))
