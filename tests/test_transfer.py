"""Transfer learning: backbone normalisation, frozen body epochs, frozen BatchNorm, probe heads cached once, speed flags."""
import json

import numpy as np
import pytest
import torch

from fastmask.callbacks.speed import Autocast, ChannelsLast
from fastmask.callbacks.transfer import FrozenBN
from fastmask.data.augment import REPORT_MEAN, REPORT_STD
from fastmask.errors import RecipeError
from fastmask.models import probe
from fastmask.models.backbones import body_head, create_model, pretrained_stats
from fastmask.recipes import parse_set, resolve
from fastmask.recipes.registry import override
from fastmask.runners.run import run_recipe
from fastmask.runners.train import build_learner, fit_task
from fastmask.runtime import Runtime
from ddp import DDPWrap  # noqa: E402  (tests/ddp.py; the `ddp_group` fixture is in conftest.py)

RT = Runtime(num_workers=0)   # loaders in this process


def _recipe(**kw):
    return resolve('baseline_mobilenetv2', quick=True, **{**dict(size=32, bs=16, epochs=1), **kw})


def _norm_stats(learn):
    n = next(t for t in learn.dls.after_batch.fs if type(t).__name__ == 'Normalize')
    return tuple(n.mean.flatten().tolist()), tuple(n.std.flatten().tolist())


def test_normalisation_comes_from_the_backbone(tiny_demo):
    mean, std = pretrained_stats('tf_efficientnet_lite0')
    assert np.allclose(mean, 0.5) and np.allclose(std, 0.5)    # what the Lite0 weights expect
    learn = build_learner(_recipe(norm='pretrained'), tiny_demo, 'gender', runtime=RT)
    assert np.allclose(_norm_stats(learn), pretrained_stats('mobilenetv2_100'), atol=1e-6)
    learn = build_learner(_recipe(norm='report'), tiny_demo, 'gender', runtime=RT)
    assert np.allclose(_norm_stats(learn), (REPORT_MEAN, REPORT_STD), atol=1e-6)
    with pytest.raises(RecipeError, match='norm'): build_learner(_recipe(norm='nope'), tiny_demo, 'gender', runtime=RT)


@pytest.mark.parametrize('freeze_lr', [None, 3e-2])
def test_phase_rates_follow_fine_tune_or_the_head_rate(tiny_demo, tmp_path, monkeypatch, freeze_lr):
    import fastmask.runners.train as train
    calls = []
    monkeypatch.setattr(train, '_fit', lambda learn, epochs, lr, r, cbs, **kw: calls.append((epochs, lr, kw)))
    r = _recipe(freeze_epochs=2, epochs=3, lr=1e-3, lr_mult=10.0, freeze_lr=freeze_lr)
    fit_task(build_learner(r, tiny_demo, 'gender', runtime=RT), tmp_path)
    (e1, lr1, kw1), (e2, lr2, _) = calls
    assert (e1, e2) == (2, 3)
    if freeze_lr is None:    # fastai's fine_tune: the head at lr (pct_start 0.99), then slice(lr / 2 / mult, lr / 2)
        assert lr1 == 1e-3 and kw1 == dict(pct_start=0.99) and (lr2.start, lr2.stop) == (5e-5, 5e-4)
    else:                    # LP-FT: the head to convergence at its own rate, then slice(lr / mult, lr)
        assert lr1 == 3e-2 and kw1 == {} and (lr2.start, lr2.stop) == (1e-4, 1e-3)


def test_report_recipes_keep_the_reports_statistics():
    assert resolve('split_effnet_b3').norm == 'report' and resolve('baseline_mobilenetv2').norm == 'report'
    assert resolve('cpu_split_lite0').norm == 'pretrained'


@pytest.mark.parametrize('bn', ['frozen', 'train'])
def test_frozen_epochs_leave_the_body_alone(tiny_demo, tmp_path, bn):
    r = _recipe(freeze_epochs=1, epochs=0, bn=bn, lr=1e-2)
    learn = build_learner(r, tiny_demo, 'gender', runtime=RT)
    body, head = body_head(learn.model)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    head_before = [p.clone() for p in head]
    fit_task(learn, tmp_path)
    after = learn.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    head_keys = {k for k in before if k.startswith('classifier')}
    assert changed & head_keys and any(not torch.equal(a, b) for a, b in zip(head_before, head))  # the head learned
    convs = {k for k in before if k.endswith('weight') and before[k].ndim == 4}
    assert not changed & convs                                                                   # the body did not
    if bn == 'frozen': assert changed <= head_keys    # running statistics and BN weights stay too
    else: assert any('running_mean' in k for k in changed)                       # fastai's train_bn: BN keeps training


def test_frozen_bn_keeps_running_statistics_while_weights_train(tiny_demo, tmp_path):
    learn = build_learner(_recipe(bn='frozen', lr=1e-2), tiny_demo, 'gender', runtime=RT)
    assert any(isinstance(c, FrozenBN) for c in learn.cbs)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    fit_task(learn, tmp_path)
    after = learn.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if 'running_' in k)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith('weight') and before[k].ndim == 4)


def test_fastai_head_and_splitter():
    m = create_model('mobilenetv2_100', 3, head='fastai')
    body, head = body_head(m)
    assert isinstance(m, torch.nn.Sequential) and m(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    assert len(body) + len(head) == len(list(m.parameters())) and any(p.ndim == 2 for p in head)
    with pytest.raises(RecipeError, match='head'): create_model('mobilenetv2_100', 3, head='mlp')


def test_probe_head_equals_logistic_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    for n in (2, 3):
        y = (x[:, 0] > 0).astype(int) + ((x[:, 1] > 0.5).astype(int) if n == 3 else 0)
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.metrics import f1_score, make_scorer
        w, b = probe.fit_head(x, y, n, C=0.05)
        lr = LogisticRegression(C=0.05, max_iter=2000, class_weight='balanced', random_state=0).fit(x, y)
        assert np.allclose(torch.softmax(torch.from_numpy(x) @ w.T + b, -1).numpy(), lr.predict_proba(x), atol=1e-4)
        w, b = probe.fit_head(x, y, n)   # C chosen by cross-validated macro F1
        cv = LogisticRegressionCV(Cs=list(probe.PROBE_CS), cv=3, scoring=make_scorer(f1_score, average='macro'), max_iter=2000,
                                  class_weight='balanced', random_state=0).fit(x, y)
        assert np.allclose(torch.softmax(torch.from_numpy(x) @ w.T + b, -1).numpy(), cv.predict_proba(x), atol=1e-4)


def test_probe_fits_hold_blas_to_one_thread(monkeypatch):
    "Both fits run with BLAS on one thread (its threads beside torch's OpenMP ones made a 0.5 s fit take 7 s)."
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from threadpoolctl import threadpool_info
    seen = []
    for cls in (LogisticRegression, LogisticRegressionCV):
        fit = cls.fit
        def spy(self, *a, _fit=fit, **k):
            seen.append(max(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'))
            return _fit(self, *a, **k)
        monkeypatch.setattr(cls, 'fit', spy)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)).astype(np.float32), np.arange(60) % 2
    probe.fit_head(x, y, 2, C=0.05)
    probe.fit_head(x, y, 2)
    assert len(seen) >= 2 and set(seen) == {1}


def test_probe_folds_keep_people_together():
    rng = np.random.default_rng(1)
    people = np.repeat(np.arange(30), 5)           # five photos of each of 30 people, one label per person
    y = (people % 3 == 0).astype(int)
    folds = probe.cv_folds(y, people, 3, seed=0)
    assert len(folds) == 3 and sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(len(y)))
    for tr, te in folds: assert not set(people[tr]) & set(people[te])   # no person on both sides
    assert probe.cv_folds(y, None) == 3 and probe.cv_folds(y, np.zeros(len(y))) == 3   # no groups: plain k-fold
    one = np.where(np.arange(len(y)) < 5, 0, 1)   # a class held by one person cannot be in every training part
    assert probe.cv_folds(one, people) == 3
    x = (y[:, None] + rng.normal(size=(len(y), 4))).astype(np.float32)
    w, b = probe.fit_head(x, y, 2, groups=people)
    assert ((x @ w.numpy().T + b.numpy()).argmax(1) == y).mean() > 0.6


def test_probe_caches_features_once(tiny_demo, tmp_path, monkeypatch):
    from fastmask.io import cache_root
    from fastmask.models.backbones import Prelogits
    r = resolve('probe_lite0', size=32, bs=16, tasks=('gender',))
    d1 = run_recipe(r, tiny_demo, out=tmp_path, num_workers=0)
    files = sorted((cache_root() / 'features').glob('*.npy'))
    assert files, 'the probe wrote no feature cache'
    stamps = {f: f.stat().st_mtime_ns for f in files}
    def no_forward(self, x): raise AssertionError('features were computed again')
    monkeypatch.setattr(Prelogits, 'forward', no_forward)
    d2 = run_recipe(r, tiny_demo, out=tmp_path, num_workers=0)
    assert {f: f.stat().st_mtime_ns for f in files} == stamps   # the second run read the cache
    s1, s2 = (json.loads((d / 'summary.json').read_text()) for d in (d1, d2))
    assert s1['valid_f1_gender'] == s2['valid_f1_gender'] and s1['epochs'] == {'gender': 0}
    assert (d1 / 'model_gender.pth').is_file()   # a probe is an ordinary task model: predict / evaluate use it


def test_precision_flags_reach_learner_and_config(tiny_demo, tmp_path):
    "The runtime's speed settings reach the Learner and the run's config.json (its `runtime`, not the recipe)."
    r = _recipe(tasks=('gender',))
    bf16 = Runtime(precision='bf16', channels_last=True, num_workers=0)
    learn = build_learner(r, tiny_demo, 'gender', runtime=bf16)
    assert learn.speed['precision'] == 'bf16' and learn.speed['channels_last']
    assert any(isinstance(c, Autocast) for c in learn.cbs) and any(isinstance(c, ChannelsLast) for c in learn.cbs)
    learn = build_learner(r, tiny_demo, 'gender', runtime=Runtime(precision='fp32', channels_last=False, num_workers=0))
    assert learn.speed['precision'] == 'fp32' and not any(isinstance(c, (Autocast, ChannelsLast)) for c in learn.cbs)
    d = run_recipe(r, tiny_demo, out=tmp_path, runtime=bf16)
    cfg = json.loads((d / 'config.json').read_text())
    assert cfg['runtime']['precision'] == 'bf16' and cfg['runtime']['channels_last'] is True
    assert 'precision' not in cfg['recipe'] and json.loads((d / 'summary.json').read_text())['speed']['gender']['precision'] == 'bf16'


def test_set_parses_recipe_fields():
    assert parse_set('bn=frozen') == ('bn', 'frozen') and parse_set('freeze-epochs=2') == ('freeze_epochs', 2)
    assert parse_set('wd=0.05') == ('wd', 0.05) and parse_set('cutmix_old=false') == ('cutmix_old', False)
    assert parse_set('swa_start=none') == ('swa_start', None) and parse_set('tasks=mask,age') == ('tasks', ('mask', 'age'))
    assert parse_set('fold=none') == ('fold', None) and parse_set('fold=2') == ('fold', 2)
    for bad in ('nofield=1', 'wd=abc', 'bn', 'precision=fp32'):   # speed is the runtime's (--precision), not the recipe's
        with pytest.raises(RecipeError, match='--set'): parse_set(bad)


def test_cpu_recipe_crops_at_random_scales_for_the_mask_model_only(tiny_demo):
    "cpu_split_lite0's random resized crops reach the mask model's training batches, not the gender model's."
    r = resolve('cpu_split_lite0', size=32, bs=16, pretrained=False)
    names = {t: [type(f).__name__ for f in build_learner(r, tiny_demo, t, runtime=RT).dls.train.after_batch.fs]
             for t in ('mask', 'gender')}
    assert 'RandomResizedCropGPU' in names['mask'] and 'RandomResizedCropGPU' not in names['gender']


# --- under DistributedDataParallel (a one-process gloo group) and with SyncBatchNorm, on the CPU ---


from fastai.data.core import DataLoaders
from fastai.learner import Learner
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import TensorDataset


class TinyNet(nn.Module):
    "A timm-like model: a BatchNorm body and a linear `get_classifier()`."
    def __init__(self):
        super().__init__()
        self.body, self.classifier = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU()), nn.Linear(8, 2)
    def get_classifier(self): return self.classifier
    def forward(self, x): return self.classifier(self.body(x))


def _tiny_learner(model, cbs=()):
    torch.manual_seed(0)
    x = torch.randn(64, 5) * 3 + 1
    ds = TensorDataset(x, (x[:, 0] > 1).long())
    dls = DataLoaders.from_dsets(ds, ds, bs=16, device='cpu', num_workers=0)   # no fork beside a gloo group's threads
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss(), cbs=list(cbs))


@pytest.mark.parametrize('wrap', ['ddp', 'sync_bn'])
def test_frozen_bn_under_ddp_and_sync_batchnorm(wrap, request):
    "FrozenBN reaches the body through a DDP wrapper and freezes SyncBatchNorm (what DDP installs on CUDA)."
    model = TinyNet()
    if wrap == 'ddp': request.getfixturevalue('ddp_group')
    else: model = nn.SyncBatchNorm.convert_sync_batchnorm(model)   # CPU DDP refuses SyncBatchNorm: checked unwrapped
    learn = _tiny_learner(model, [FrozenBN()] + ([DDPWrap()] if wrap == 'ddp' else []))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with learn.no_bar(), learn.no_logging(): learn.fit(2, 1e-2)
    after = learn.model.state_dict()
    assert learn.model is model and isinstance(model.body[1], nn.SyncBatchNorm) == (wrap == 'sync_bn')
    assert all(torch.equal(before[k], after[k]) for k in before if 'running_' in k or 'num_batches' in k)
    assert not torch.equal(before['body.1.weight'], after['body.1.weight'])   # BatchNorm weights still train


def test_probe_head_through_a_ddp_wrapper(ddp_group):
    model = TinyNet()
    w, b = torch.randn(2, 8), torch.randn(2)
    assert probe.set_head(DistributedDataParallel(model), w, b).module is model
    assert torch.equal(model.classifier.weight, w) and torch.equal(model.classifier.bias, b)


def test_frozen_stages_keep_their_weights_and_statistics_and_get_no_gradient(tiny_demo, tmp_path):
    from fastmask.callbacks.transfer import FrozenStages
    from fastmask.models.backbones import stages
    r = resolve('cpu_split_lite0', quick=True, size=32, bs=16, epochs=1, lr=1e-2, head_init='', bn='train', frozen_stages=3)
    learn = build_learner(r, tiny_demo, 'gender', runtime=RT)
    assert any(isinstance(c, FrozenStages) for c in learn.cbs)
    frozen = {n for s in stages(learn.model)[:3] for n in s}
    assert {n for n, p in learn.model.named_parameters() if not p.requires_grad} == frozen
    body, _ = body_head(learn.model)
    assert not {id(p) for p in body} & {id(p) for n, p in learn.model.named_parameters() if n in frozen}  # not in the optimizer
    prefixes = tuple(sorted({n.rsplit('.', 1)[0] + '.' for n in frozen}))
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    fit_task(learn, tmp_path)
    after = learn.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and not {k for k in changed if k.startswith(prefixes)}      # frozen stages: weights and BN statistics
    assert any(k.startswith('blocks.2.') and 'running_mean' in k for k in changed)   # bn='train' holds after them
    assert any(k.startswith('blocks.2.') and k.endswith('weight') for k in changed)  # later stages learn
    learn.unfreeze()                                                            # fastai's unfreeze leaves them frozen
    assert {n for n, p in learn.model.named_parameters() if not p.requires_grad} == frozen


def test_frozen_stages_must_leave_something_to_train(tiny_demo):
    r = resolve('cpu_split_lite0', quick=True, size=32, bs=16, epochs=1, head_init='', frozen_stages=99)
    with pytest.raises(RecipeError, match='whole body'): build_learner(r, tiny_demo, 'gender', runtime=RT)


@pytest.mark.parametrize('arch', ['tf_efficientnet_lite0', 'mobilenetv2_100', 'resnet18'])
def test_stages_cover_the_body_in_forward_order(arch):
    from fastmask.models.backbones import stages
    for head in ('linear', 'fastai'):
        m = create_model(arch, 3, pretrained=False, head=head)
        st = stages(m)
        body, _ = body_head(m)
        names = [n for s in st for n in s]
        assert len(st) >= 4 and len(names) == len(set(names)) == len(body)
        order = [n for n, _ in m.named_parameters()]
        assert [order.index(s[0]) for s in st] == sorted(order.index(s[0]) for s in st)   # stem first


def test_probe_photos_fit_the_probe_head_on_a_few_photos_a_person(tiny_demo, monkeypatch):
    from fastmask.runners import train
    seen = []
    real = train.features
    def spy(body, paths, *a, **kw):
        seen.append(list(paths))
        return real(body, paths, *a, **kw)
    monkeypatch.setattr(train, 'features', spy)
    r = resolve('cpu_split_lite0', size=32, bs=16, epochs=1, pretrained=False)
    for k in (0, 2):
        learn = build_learner(override(r, probe_photos=k), tiny_demo, 'gender', runtime=RT)
        train.probe_head(learn)
        items = learn.dls.train_ds.items
        used = items[items['path'].isin(seen[-1])]
        assert len(used) == len(seen[-1])                                  # training photos only
        if k: assert used.groupby('person').size().eq(k).all() and used['person'].nunique() == items['person'].nunique()
        else: assert len(used) == len(items)
