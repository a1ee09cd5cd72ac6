"""A pretrained run: put a model trained elsewhere where the pipeline expects a trained one.

The source is an upstream checkpoint (converted by convert.py) or a model.pt of this project. Before it
stands in for a training, two things are checked, so a wrong file fails here and not as odd metrics later:
* it fits the cache: same z-bins, z_range and slice size (tokens and priors mean the same slices);
* it is the model the grid says it is: prediction, Lp exponent, self-conditioning, coupling variant.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from slimdiff.data.cache import load_cache
from slimdiff.io import atomic_path
from slimdiff.model.file import ModelFileError, read_model_file
from slimdiff.upstream.checkpoint import UpstreamImportError
from slimdiff.upstream.convert import import_upstream, read_upstream_yaml


def install_pretrained(
    source: str | Path,
    out: str | Path,
    cache_dir: str | Path,
    claimed: dict,
    *,
    config: str | Path | None = None,
    priors: str | Path | None = None,
    weights: str = "auto",
) -> dict:
    """Write `out` (model.pt) from `source`; `claimed` is the run config the grid gives (model, diffusion, loss,
    self_conditioning). Returns what was done."""
    source, out = Path(source), Path(out)
    try:
        # The model is checked in its temporary file and takes out's place only when it passed: a job killed
        # during the checks leaves nothing that looks installed.
        with atomic_path(out, suffix=".pt") as staged:
            if _is_model_file(source):
                shutil.copyfile(source, staged)
                summary = {"source": str(source), "kind": "model.pt"}
            else:
                up_cfg = read_upstream_yaml(config) if config else None
                summary = {"source": str(source), "kind": "upstream checkpoint"}
                summary.update(import_upstream(source, staged, config=up_cfg, priors=priors, weights=weights))
            payload = read_model_file(staged)
            check_fits_cache(payload["data_info"], cache_dir, source)
            check_claims(payload["run_cfg"], claimed, source)
    except Exception:
        out.unlink(missing_ok=True)  # nor an earlier model in its place, which the grid no longer names
        raise
    return summary


def _is_model_file(path: Path) -> bool:
    if not path.is_file():
        raise UpstreamImportError(f"{path}: pretrained model not found (grid `pretrained.file`)")
    try:
        read_model_file(path)
    except ModelFileError:
        return False
    return True


def check_fits_cache(info: dict, cache_dir: str | Path, source: Path) -> None:
    meta = load_cache(cache_dir).meta
    ours = {"z_bins": meta["z_bins"], "z_range": list(meta["z_range"]), "image_size": list(meta["slice_shape"])}
    theirs = {"z_bins": info["z_bins"], "z_range": list(info["z_range"]), "image_size": list(info["image_size"])}
    wrong = [f"{k}: model {theirs[k]} vs cache {ours[k]}" for k in ours if ours[k] != theirs[k]]
    if wrong:
        raise UpstreamImportError(
            f"{source}: does not fit the slice cache {cache_dir} ({'; '.join(wrong)}); "
            "set data.cache (z_bins, z_range, roi_size) to the model's training geometry"
        )


def check_claims(run_cfg: dict, claimed: dict, source: Path) -> None:
    sc = run_cfg["self_conditioning"]
    actual = {
        "prediction": run_cfg["diffusion"]["prediction"],
        "p": float(run_cfg["loss"]["p"]),
        "self_conditioning": float(sc["probability"]) if sc["enabled"] else 0.0,
        "variant": run_cfg["model"]["variant"],
    }
    c_sc = claimed["self_conditioning"]
    said = {
        "prediction": claimed["diffusion"]["prediction"],
        "p": float(claimed["loss"]["p"]),
        "self_conditioning": float(c_sc["probability"]) if c_sc["enabled"] else 0.0,
        "variant": claimed["model"]["variant"],
    }
    wrong = [f"{k}: grid says {said[k]}, model is {actual[k]}" for k in said if said[k] != actual[k]]
    if wrong:
        raise UpstreamImportError(f"{source}: is not the model its experiments grid describes ({'; '.join(wrong)})")
