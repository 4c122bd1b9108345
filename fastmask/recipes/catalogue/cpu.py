"""Recipes for a laptop CPU and the offline EfficientNet-Lite0 ImageNet weights: a linear probe, and fine-tuning
that beats it (LP-FT: the head starts from the probe, then the whole network trains with small body rates while
the body's BatchNorm keeps its running statistics). Settings measured on 2 cores (`benchmarks/transfer.py`)."""
from fastmask.models.lite import ARCH
from fastmask.recipes.registry import SPLIT_TASKS, Recipe, register
from fastmask.recipes.spec import merge_task_overrides

#: shared by the CPU recipes: backbone statistics (0.5/0.5 for Lite0); `auto`: fp32 + channels-last on an AVX2 or AVX-512 CPU
CPU = dict(arch=ARCH, pretrained=True, norm='pretrained', bs=32, valid_pct=0.15)

register(Recipe(
    name='probe_lite0',
    description='Linear probe: frozen Lite0 ImageNet features (computed once, cached), a logistic regression per task '
                '(mask, gender, age) as the head; the baseline every fine-tuned recipe must beat',
    tasks=SPLIT_TASKS, size=224, epochs=0, head_init='probe', **CPU))

#: LP-FT measured on raw UTKFace (study `cpu-utk`): lr 1e-3 with the body at lr / 5 beat lr 5e-4 with the body at
#: lr / 25 (gender 0.845 vs 0.828, age 0.798 vs 0.745; probe 0.812 / 0.712), and 6 epochs beat 3 on every data set
#: (studies `cpu-masks`, `cpu-utk`). Random resized crops (half the area at the least) help the mask model on real
#: mask photos (mean of 3 splits 0.934 vs 0.921) and cost the gender model on aligned faces, so only the mask task
#: has them. Gender and age draw 3 photos a person per epoch (one worn, incorrect, normal) as the mask task does:
#: 7/3 cheaper epochs on the competition layout.
LPFT = dict(head_init='probe', bn='frozen', epochs=6, lr=1e-3, lr_mult=5.0, size=160, wd=0.01, schedule='one_cycle',
            loss='label_smoothing', draw_people=True, task_overrides=(('mask', (('rrc_scale', 0.5),)),), **CPU)

#: the same F1 in half the time (study `cpu-speed-seeds`: 1,000 practice people, 3 splits, 2-core AVX-512 EPYC): the
#: stem and first three block stages frozen (no backward through them), training batches growing from 0.75x size
#: over the first half, validation in the last 2 epochs only, the mask model on 2 of a person's 3 photos an epoch
#: (its F1 is 0.99+ from the first epochs), the probe head fitted on 2 photos a person. Against LPFT: 0.42-0.50x
#: the wall time, eval people F1 (18) 0.604 +- 0.003 against 0.597 +- 0.007 (probe 0.468).
FINE = dict(LPFT, frozen_stages=4, resize_from=0.75, valid_last=2, probe_photos=2,
            task_overrides=merge_task_overrides(LPFT['task_overrides'], (('mask', (('people_photos', 2),)),)))

register(Recipe(
    name='cpu_split_lite0',
    description='Mask, gender and age Lite0 models for a 2-core CPU: head from a linear probe, then 6 epochs with frozen '
                'BatchNorm statistics and the stem and first 3 block stages frozen (lr 1e-3, body lr / 5), batches '
                'growing from 0.75x size, 3 photos a person per epoch (2 for the mask model, with random resized crops), '
                'validation in the last 2 epochs, channels-last where fast',
    tasks=SPLIT_TASKS, **FINE))

#: fewer steps still: gender and age on 2 of a person's 3 photos an epoch too. Measured with validation every
#: epoch (study `cpu-speed-seeds`, 3 splits): 0.44-0.45x the LPFT settings' wall time, eval people F1 (18)
#: 0.576 +- 0.008 against 0.597 +- 0.007, lower on every split.
FAST = dict(FINE, people_photos=2)

register(Recipe(
    name='cpu_fast_lite0',
    description='cpu_split_lite0 with fewer steps: 2 photos a person per epoch for every model (F1 lower by about 0.02)',
    tasks=SPLIT_TASKS, **FAST))

register(Recipe(
    name='cpu_full_lite0',
    description="cpu_split_lite0's settings before the speed levers: the whole network trains on 3 photos a person "
                'per epoch at full size, the probe on every photo, validation every epoch (twice the time, the same F1)',
    tasks=SPLIT_TASKS, **LPFT))

register(Recipe(
    name='cpu_baseline_lite0',
    description='One 18-class Lite0 model with the cpu_split_lite0 settings (probe head, frozen BatchNorm, 6 epochs)',
    tasks=('all',), **FINE))

# The report's composite effects on the CPU recipe (study `report-effects`)
register(Recipe(
    name='cpu_ensemble_lite0',
    description='Soft vote of three cpu_split_lite0 runs that differ in seed and image size (160, 192, 128 px): '
                "the report's 3-member ensemble with the one backbone a CPU has offline",
    kind='ensemble', members=('cpu_split_lite0', 'cpu_split_lite0[seed=1,size=192]', 'cpu_split_lite0[seed=2,size=128]'),
    report='LB 0.69 / 0.67 / 0.68 -> 0.70'))

register(Recipe(
    name='cpu_kfold_lite0',
    description='cpu_split_lite0 trained on 3 person folds (stratified by gender x age); folds soft-voted, '
                'out-of-fold F1', kind='kfold', tasks=SPLIT_TASKS, folds=3, fold_kind='train', **FINE))

register(Recipe(
    name='cpu_facecrop_lite0',
    description='cpu_split_lite0 trained and evaluated on face crops (MTCNN, OpenCV cascade for misses, else the '
                'original; needs fastmask[facecrop])', kind='facecrop', tasks=SPLIT_TASKS, report='LB -0.06',
    preprocess='facecrop', detectors=('mtcnn', 'cascade'), margin=0.2, **dict(FINE, crop=0.0)))
