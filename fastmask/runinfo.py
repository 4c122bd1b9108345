"""What a run records about its environment, so that it can be rerun."""
from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

__all__ = ['environment', 'package_versions']

_PACKAGES = ('fastmask', 'torch', 'torchvision', 'fastai', 'timm', 'numpy', 'pandas', 'scikit-learn', 'pillow')


def package_versions(names=_PACKAGES) -> dict[str, str | None]:
    "Installed versions of the packages a run depends on."
    out = {}
    for n in names:
        try: out[n] = version(n)
        except PackageNotFoundError: out[n] = None
    return out


def environment() -> dict:
    "Versions, Python, platform, device and start time."
    import torch
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'
    return dict(versions=package_versions(), python=sys.version.split()[0], platform=platform.platform(),
                device=dev, started=datetime.now(timezone.utc).isoformat(timespec='seconds'))
