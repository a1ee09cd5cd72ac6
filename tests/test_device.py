"""The one "auto" device choice that training, sampling, the metrics and the workflow scripts share."""

import subprocess
import sys

import pytest
import torch

from slimdiff.device import pick_device
from slimdiff.errors import SlimdiffInputError


def test_auto_is_cuda_when_visible_else_cpu(monkeypatch):
    assert pick_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == pick_device() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a GPU")
    assert pick_device("auto") == "cuda"


def test_unusable_devices_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in (("cuda", "no CUDA device"), ("cuda:1", "no CUDA device"), ("gpu", "unknown device")):
        with pytest.raises(SlimdiffInputError, match=message):
            pick_device(device)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SlimdiffInputError, match="only 1 CUDA devices"):
        pick_device("cuda:1")


def test_importing_it_does_not_load_torch():
    code = "import sys, slimdiff.device; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
