"""Recipes for a laptop CPU and the offline EfficientNet-Lite0 ImageNet weights: a linear probe, and fine-tuning
that beats it (LP-FT: the head starts from the probe, then the whole network trains with small body rates while
the body's BatchNorm keeps its running statistics). Settings measured on 2 cores (`benchmarks/transfer.py`)."""
from fastmask.models.lite0 import ARCH
from fastmask.recipes.registry import SPLIT_TASKS, Recipe, register

#: shared by the CPU recipes: backbone statistics (0.5/0.5 for Lite0); `auto`: fp32 + channels-last on an AVX-512 CPU
CPU = dict(arch=ARCH, pretrained=True, norm='pretrained', precision='auto', bs=32, valid_pct=0.15)

register(Recipe(
    name='probe_lite0',
    description='Linear probe: frozen Lite0 ImageNet features (computed once, cached), a logistic regression per task '
                '(mask, gender, age) as the head; the baseline every fine-tuned recipe must beat',
    tasks=SPLIT_TASKS, size=224, epochs=0, head_init='probe', **CPU))

FINE = dict(head_init='probe', bn='frozen', epochs=3, lr=5e-4, lr_mult=25.0, size=160, wd=0.01, schedule='one_cycle',
            loss='label_smoothing', **CPU)

register(Recipe(
    name='cpu_split_lite0',
    description='Mask, gender and age Lite0 models for a 2-core CPU: head from a linear probe, then 3 epochs of the '
                'whole network (body lr / 25) with frozen BatchNorm statistics, channels-last where fast',
    tasks=SPLIT_TASKS, **FINE))

register(Recipe(
    name='cpu_baseline_lite0',
    description='One 18-class Lite0 model with the cpu_split_lite0 settings (probe head, frozen BatchNorm, 3 epochs)',
    tasks=('all',), **FINE))
