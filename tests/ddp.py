"""DistributedDataParallel in one process for tests: a wrapper callback (the `ddp_group` fixture is in conftest.py)."""
from fastai.callback.core import Callback
from torch.nn.parallel import DistributedDataParallel


class DDPWrap(Callback):
    "fastai's `DistributedTrainer` without Accelerate: the model in DistributedDataParallel during the fit only."
    order = 11
    def before_fit(self): self.learn.model = DistributedDataParallel(self.model)
    def after_fit(self): self.learn.model = self.model.module
