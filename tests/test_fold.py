"""BatchNorm folded into convolutions for inference: the same outputs, the caller's model untouched, and models
where folding would change the outputs left as they are."""
import pytest
import timm
import torch
from torch import nn

from fastmask.models.fold import conv_bn_pairs, fold_batchnorm, folded_inference_model


def _trained_like(model: nn.Module) -> nn.Module:
    "Running statistics and affine parameters that are not the identity, as a trained model's are not."
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t, lo, hi in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.5, 2.0), (m.weight, 0.5, 1.5), (m.bias, -0.2, 0.2)):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
    return model.eval()


def _bns(model): return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize('arch', ['tf_efficientnet_lite0', 'mobilenetv2_100', 'resnet18'])   # tf_: Conv2dSame padding
def test_folded_copy_predicts_the_same(arch):
    model = _trained_like(timm.create_model(arch, pretrained=False, num_classes=3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert folded is not model and _bns(folded) == 0 < _bns(model)   # every BatchNorm of these nets reads a convolution
    x = torch.randn(4, 3, 96, 96)
    with torch.no_grad(): torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())   # the original is untouched


def test_activation_of_timm_batchnormact_is_kept():
    "Lite0's BatchNormAct2d applies ReLU6 after the normalisation: the fold keeps it (outputs would differ otherwise)."
    model = _trained_like(timm.create_model('efficientnet_lite0', pretrained=False, num_classes=2))
    acts = sum(isinstance(m, nn.ReLU6) for m in model.modules())
    assert acts > 0 and sum(isinstance(m, nn.ReLU6) for m in fold_batchnorm(model).modules()) == acts


class Shared(nn.Module):
    "A convolution whose output is normalised and also added back: folding the BatchNorm would change the sum."
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_conv_output_read_elsewhere_is_not_folded():
    model = _trained_like(Shared())
    assert conv_bn_pairs(model, torch.randn(2, 3, 16, 16)) == [('conv', 'bn')]   # the hooks see the pair...
    assert fold_batchnorm(model) is model                                          # ...the output check refuses it


class BnFirst(nn.Module):
    "BatchNorm on the input, then a convolution: nothing to fold."
    def __init__(self):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3)
    def forward(self, x): return self.conv(self.bn(x))


def test_nothing_to_fold_returns_the_model():
    for model in (_trained_like(BnFirst()), nn.Sequential(nn.Flatten(), nn.Linear(3, 2)).eval()):
        assert fold_batchnorm(model) is model


def test_training_mode_is_refused():
    with pytest.raises(ValueError, match='eval mode'): fold_batchnorm(timm.create_model('efficientnet_lite0', num_classes=2))


def test_inference_model_keeps_a_learners_layers():
    "The probe's feature pass folds a copy: the Learner's model, trained afterwards, keeps its BatchNorm layers."
    model = timm.create_model('efficientnet_lite0', pretrained=False, num_classes=2).train()
    n = _bns(model)
    inf = folded_inference_model(model, device=torch.device('cpu'))
    assert _bns(inf) == 0 and _bns(model) == n


def test_only_fp32_inference_is_folded():
    "Under bf16 autocast the model keeps its BatchNorm: 16-bit folded weights would move its predictions."
    from fastmask.runtime import Runtime
    model = timm.create_model('efficientnet_lite0', pretrained=False, num_classes=2)
    cpu = torch.device('cpu')
    assert _bns(folded_inference_model(model, Runtime(precision='bf16', channels_last=False), cpu)) == _bns(model) > 0
    assert _bns(folded_inference_model(model, Runtime(precision='fp32', channels_last=False), cpu)) == 0
