"""The preprocessing stage's contract with the rest of the pipeline: the config guard for an as-acquired
synthetic cohort, on_bad_subject as a param of the gathering rule, and the acquisition fields the cohort
selection reads, carried from the raw sidecar into the derivatives."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

from slimdiff.config import ConfigError, validate_config
from slimdiff.data.cohort import select_cohort
from slimdiff.data.ingest import discover
from slimdiff.preprocess import cohort
from slimdiff.preprocess.subject import SOURCE_SIDECAR_FIELDS, names, source_acquisition, write_subject
from slimdiff.rerun import rule_settings


def _config(data=None, preprocess=None) -> dict:
    return validate_config({"data": data or {}, "preprocess": preprocess or {}})


@pytest.mark.parametrize(
    "preprocess",
    [{}, {"kde": {"enabled": True}}, {"brain_extraction": {"backend": "mask-file"}, "n4": {"enabled": True}}],
)
def test_an_as_acquired_synthetic_cohort_needs_brain_extraction(preprocess):
    cfg = _config({"synthetic": {"as_acquired": True}}, preprocess)
    with pytest.raises(ConfigError) as err:
        cohort.check_config(cfg["preprocess"], cfg["data"])
    message = str(err.value)
    assert "data.synthetic.as_acquired" in message and "preprocess.brain_extraction.backend" in message
    assert "\n" not in message


def test_the_guard_lets_through_what_can_run():
    for data, preprocess in (
        ({"synthetic": {"as_acquired": True}}, {"brain_extraction": {"backend": "hd-bet"}}),
        ({}, {}),  # the embedded default: stripped cohort, stage off
        ({"source": "raw", "synthetic": {"as_acquired": True}}, {}),  # the synthetic block is unused with raw data
    ):
        cfg = _config(data, preprocess)
        cohort.check_config(cfg["preprocess"], cfg["data"])


def test_on_bad_subject_is_a_param_of_the_gathering_rule_not_of_the_subject_jobs():
    data = _config()["data"]
    skip = _config({"ingest": {"on_bad_subject": "skip"}})["data"]
    assert rule_settings("preprocess_cohort", "data", data)["ingest"] == {"on_bad_subject": "stop"}
    assert rule_settings("preprocess_cohort", "data", skip)["ingest"] == {"on_bad_subject": "skip"}
    assert rule_settings("preprocess", "data", data) == rule_settings("preprocess", "data", skip)
    rules = (REPO / "rules/data.smk").read_text()
    gather_rule = rules[rules.index("rule preprocess_cohort:") : rules.index("rule build_cache:")]
    assert 'on_bad_subject=settings("preprocess_cohort", "data")' in gather_rule
    script = (REPO / "workflow/scripts/preprocess_cohort.py").read_text()
    assert "snakemake.params.on_bad_subject" in script and 'config["data"]' not in script


def _raw_subject(root, sid, sidecar):
    """A 2 mm phantom FLAIR with its brain mask and a JSON sidecar beside it."""
    anat = root / sid / "anat"
    anat.mkdir(parents=True)
    shape = (24, 26, 20)
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((g - c) / (0.42 * s)) ** 2 for g, c, s in zip(grid, centre, shape, strict=True)))
    brain = r < 1.0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    image = np.where(r < 0.7, 300.0, np.where(brain, 400.0, 5.0))
    nib.save(nib.Nifti1Image(image, affine), anat / f"{sid}_FLAIR.nii.gz")
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), anat / f"{sid}_desc-brain_mask.nii.gz")
    if sidecar is not None:
        (anat / f"{sid}_FLAIR.json").write_text(sidecar, encoding="utf-8")


@pytest.mark.slow
def test_acquisition_fields_reach_the_derivatives_and_the_cohort_selection(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "preprocessed"
    fields = {"MRAcquisitionType": "3D", "SpacingBetweenSlices": 2.0, "SliceThickness": 2.0, "EchoTime": 0.39}
    _raw_subject(raw, "sub-01", "\ufeff" + json.dumps({**fields, "SeriesDescription": "not carried"}))
    _raw_subject(raw, "sub-02", json.dumps({"MRAcquisitionType": "2D", "SpacingBetweenSlices": 4.4}))
    _raw_subject(raw, "sub-03", None)  # no sidecar: nothing to carry, not an error
    _raw_subject(raw, "sub-04", "{broken")  # unreadable: a warning, as in data.cohort
    cfg = _config(preprocess={"brain_extraction": {"backend": "mask-file"}})["preprocess"]
    for subject in discover(raw, "bids", {}):
        write_subject(subject, cfg, out / subject.subject_id)
    side = json.loads((out / "sub-01" / names("sub-01")["sidecar"]).read_text())
    assert {k: side[k] for k in fields} == fields and "SeriesDescription" not in side
    assert set(source_acquisition(raw / "sub-01/anat/sub-01_FLAIR.nii.gz")) <= set(SOURCE_SIDECAR_FIELDS)
    assert "MRAcquisitionType" not in json.loads((out / "sub-03" / names("sub-03")["sidecar"]).read_text())
    assert "MRAcquisitionType" not in json.loads((out / "sub-04" / names("sub-04")["sidecar"]).read_text())

    data = _config({"ingest": {"include_controls": True}, "cohort": {"acquisition": ["3D"]}})["data"]
    kept, table = select_cohort(discover(out, "bids", {}), out, data)
    assert [s.subject_id for s in kept] == ["sub-01"], table
    spacing = _config({"ingest": {"include_controls": True}, "cohort": {"max_slice_spacing_mm": 3.0}})["data"]
    kept, _ = select_cohort(discover(out, "bids", {}), out, spacing)
    assert [s.subject_id for s in kept] == ["sub-01", "sub-03", "sub-04"], "sub-02's 4.4 mm from its raw sidecar"
