"""Transfer-learning callbacks: body BatchNorm kept in eval mode (running statistics frozen while weights train).

Why (measured on real faces with EfficientNet-Lite0 ImageNet weights, `benchmarks/transfer.py`): face batches
have 0.4-0.9x the running (ImageNet) standard deviation at the BatchNorm layers and some channels have running
variance 0, so batch statistics differ from the running ones the pretrained weights were fitted with; the
mismatch compounds over the network's ~50 BatchNorm layers. Training in batch-statistics mode then moves every
feature at once (train-mode features have cosine similarity ~0.26 to eval-mode ones), the head fitted before
unfreezing no longer fits, and validation F1 drops below a frozen linear probe's. With the running statistics
frozen the pretrained features change only as fast as the small body learning rate moves the weights.

`FrozenStages` keeps the first stages of the body out of training altogether (recipe field `frozen_stages`): no
gradient, no optimizer state, no backward through them, and their BatchNorm in eval mode whatever `bn` says, so
with `bn='frozen'` the network is the same function as with every stage training, for less work a step.
"""
from __future__ import annotations

from fastai.callback.core import Callback, TrainEvalCallback
from fastai.torch_core import get_model
from torch.nn.modules.batchnorm import _BatchNorm

from fastmask.models.backbones import body_modules, frozen_stage_modules

__all__ = ['FrozenBN', 'FrozenStages', 'BN_MODES']

#: body BatchNorm handling: batch statistics in training ('train', the usual), or running statistics kept ('frozen')
BN_MODES = ('train', 'frozen')


class FrozenBN(Callback):
    "Keep the body's BatchNorm (and SyncBatchNorm) layers in eval mode while training: running statistics stay, weights train."
    order = TrainEvalCallback.order + 1  # right after fastai puts the model in train mode

    def modules(self, model):
        "The modules whose BatchNorm layers stay in eval mode: the whole body."
        return body_modules(model)

    def before_train(self):   # looked up each epoch: a DDP wrapper or SyncBatchNorm conversion may replace modules
        for m in self.modules(get_model(self.learn.model)):
            if isinstance(m, _BatchNorm): m.eval()


class FrozenStages(FrozenBN):
    "Keep the BatchNorm layers of the body's first `n` stages (which do not train: `freeze_stages`) in eval mode."
    def __init__(self, n: int): self.n = n   # how many of the body's stages (timm's coarse groups) are frozen

    def modules(self, model): return frozen_stage_modules(model, self.n)
