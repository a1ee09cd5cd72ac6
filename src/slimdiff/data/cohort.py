"""Which discovered subjects enter the cache, and which of them are the predefined test set: configuration, not code.

Applied by the cache builder before any volume is read (``data.ingest.include_controls``, ``data.cohort``,
``data.splits.test_from``), and recorded subject by subject in the cache's ``cohort.csv``: every subject
discovered, included or not, with the reason, its group, its split and its acquisition geometry.

* Acquisition geometry (:func:`acquisition_geometry`): the voxel sizes from the NIfTI header and, when the FLAIR
  has a JSON sidecar beside it (same name, ``.json``), its ``MRAcquisitionType``, ``SliceThickness`` and
  ``SpacingBetweenSlices``. The slice spacing is the coarser of the header's largest voxel size and the
  sidecar's ``SpacingBetweenSlices``: a 2D acquisition resampled to a fine grid before publication still has
  its thick slices, and a header is what counts when there is no sidecar.
* ``data.cohort.max_slice_spacing_mm`` excludes subjects whose slice spacing is larger (thick 2D slices
  resampled to the cache grid are smeared along the slice axis); ``data.cohort.acquisition`` keeps only the
  listed ``MRAcquisitionType`` values (a subject without one is excluded, with that reason).
* ``data.cohort.participants``: include filters on participants.tsv columns, ``{column: C, keep: [v, ...]}``;
  a subject is kept when its value in every named column is one of the listed ones.
* ``data.splits.test_from``: ``{column: C, test: [...], train: [...]}`` takes the test set from a
  participants.tsv column; every included subject's value must be in one of the two lists.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import pandas as pd

from slimdiff.data.ingest import DataError, Subject, read_participants, split_nifti

log = logging.getLogger(__name__)

COHORT_COLUMNS = [
    "subject",
    "group",
    "status",  # included | excluded (cohort selection) | rejected (bad input, on_bad_subject: skip)
    "reason",
    "split",  # test | trainval for included subjects, empty otherwise
    "val_fold",
    "acquisition",  # sidecar MRAcquisitionType, empty when unknown
    "slice_spacing_mm",
    "header_slice_spacing_mm",
    "sidecar_spacing_mm",
    "slice_thickness_mm",
    "voxel_mm",
]


@dataclass(frozen=True)
class Geometry:
    voxel_mm: tuple[float, ...] | None  # NIfTI header zooms, None when the header cannot be read
    acquisition: str | None  # sidecar MRAcquisitionType
    sidecar_spacing_mm: float | None  # sidecar SpacingBetweenSlices
    slice_thickness_mm: float | None  # sidecar SliceThickness

    @property
    def header_slice_spacing_mm(self) -> float | None:
        return max(self.voxel_mm) if self.voxel_mm else None

    @property
    def slice_spacing_mm(self) -> float | None:
        """The coarser of the header's largest voxel size and the sidecar's SpacingBetweenSlices."""
        known = [v for v in (self.header_slice_spacing_mm, self.sidecar_spacing_mm) if v is not None]
        return max(known) if known else None


def sidecar_path(image: Path) -> Path:
    """sub-X_FLAIR.nii.gz -> sub-X_FLAIR.json (BIDS: the sidecar has the image's name)."""
    return image.with_name(split_nifti(image.name)[0] + ".json")


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def acquisition_geometry(image: Path | None) -> Geometry:
    """The FLAIR's voxel sizes (header) and acquisition fields (JSON sidecar, when there is one).

    Unreadable files give unknown (None) values with a warning: the image itself is checked when it is loaded,
    and a broken sidecar must not stop a pipeline that selects nothing by it.
    """
    if image is None:
        return Geometry(None, None, None, None)
    try:
        voxel = tuple(round(float(z), 4) for z in nib.load(image).header.get_zooms()[:3])
    except Exception as exc:  # noqa: BLE001 - any unreadable header: load_volume reports it properly
        log.warning("%s: cannot read the NIfTI header for the cohort geometry (%s)", image, exc)
        voxel = None
    side = sidecar_path(image)
    fields: dict = {}
    if side.is_file():
        try:
            fields = json.loads(side.read_text(encoding="utf-8-sig"))
            if not isinstance(fields, dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("%s: cannot read the JSON sidecar, ignored (%s)", side, exc)
            fields = {}
    acq = fields.get("MRAcquisitionType")
    return Geometry(
        voxel,
        str(acq).strip() if acq not in (None, "") else None,
        _number(fields.get("SpacingBetweenSlices")),
        _number(fields.get("SliceThickness")),
    )


def _participants(raw_dir: Path, purpose: str) -> tuple[Path, pd.DataFrame]:
    tsv = Path(raw_dir) / "participants.tsv"
    if not tsv.is_file():
        raise DataError(tsv, f"not found; {purpose} reads participant values from it")
    table = read_participants(tsv)
    if "participant_id" not in table.columns:
        raise DataError(tsv, "has no participant_id column")
    table = table.assign(participant_id=table["participant_id"].str.strip()).drop_duplicates("participant_id")
    return tsv, table.set_index("participant_id", drop=False)  # participant_id stays a column to filter by


def _column(tsv: Path, table: pd.DataFrame, column: str, key: str) -> pd.Series:
    if column not in table.columns:
        raise DataError(tsv, f"has no column {column!r} ({key}); its columns: {', '.join(table.columns)}")
    return table[column].str.strip()


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def select_cohort(subjects: list[Subject], raw_dir: Path, data_cfg: dict) -> tuple[list[Subject], pd.DataFrame]:
    """The subjects that enter the cache (with `predefined_split` set from data.splits.test_from) and the
    cohort table: one row per discovered subject (COHORT_COLUMNS plus one ``participants:<column>`` column per
    participants.tsv column the config names)."""
    cohort = data_cfg.get("cohort", {})
    filters = cohort.get("participants", [])
    test_from = data_cfg["splits"].get("test_from")
    max_spacing = cohort.get("max_slice_spacing_mm")
    acquisitions = cohort.get("acquisition")

    tsv = table = None
    if filters or test_from:
        purpose = "data.cohort.participants" if filters else "data.splits.test_from"
        tsv, table = _participants(raw_dir, purpose)
    named = [(f["column"], "data.cohort.participants") for f in filters]
    named += [(test_from["column"], "data.splits.test_from")] if test_from else []
    values = {col: _column(tsv, table, col, key) for col, key in named}

    kept, rows = [], []
    for s in subjects:
        geo = acquisition_geometry(s.image)
        reasons = []
        if s.group == "hc" and not data_cfg["ingest"]["include_controls"]:
            reasons.append("control (data.ingest.include_controls: false)")
        for f in filters:
            value = values[f["column"]].get(s.subject_id, "")
            if value not in f["keep"]:
                reasons.append(
                    f"participants.tsv {f['column']}={value!r} not in {f['keep']} (data.cohort.participants)"
                )
        if acquisitions is not None and geo.acquisition not in acquisitions:
            found = f"MRAcquisitionType {geo.acquisition}" if geo.acquisition else "no MRAcquisitionType in a sidecar"
            reasons.append(f"{found}, not one of {acquisitions} (data.cohort.acquisition)")
        spacing = geo.slice_spacing_mm
        if max_spacing is not None and spacing is not None and spacing > max_spacing + 1e-6:
            header, sidecar = geo.header_slice_spacing_mm, geo.sidecar_spacing_mm
            if header is not None and sidecar is not None and abs(header - sidecar) < 1e-3:
                source = "NIfTI header and sidecar SpacingBetweenSlices"
            else:
                source = "sidecar SpacingBetweenSlices" if spacing == sidecar else "NIfTI header"
            reasons.append(
                f"slice spacing {spacing:g} mm ({source}) > {max_spacing:g} mm (data.cohort.max_slice_spacing_mm)"
            )
        row = {
            "subject": s.subject_id,
            "group": s.group,
            "status": "excluded" if reasons else "included",
            "reason": "; ".join(reasons),
            "split": "",
            "val_fold": "",
            "acquisition": geo.acquisition or "",
            "slice_spacing_mm": _fmt(spacing),
            "header_slice_spacing_mm": _fmt(geo.header_slice_spacing_mm),
            "sidecar_spacing_mm": _fmt(geo.sidecar_spacing_mm),
            "slice_thickness_mm": _fmt(geo.slice_thickness_mm),
            "voxel_mm": "x".join(f"{v:g}" for v in geo.voxel_mm) if geo.voxel_mm else "",
        }
        row.update({f"participants:{col}": vals.get(s.subject_id, "") for col, vals in values.items()})
        rows.append(row)
        if not reasons:
            kept.append(s)

    if test_from:
        kept = _apply_test_from(kept, tsv, values[test_from["column"]], test_from)
    table = pd.DataFrame(rows, columns=COHORT_COLUMNS + [f"participants:{c}" for c in values])
    excluded = table[table["status"] == "excluded"]
    by_choice = excluded[~excluded["reason"].str.startswith("control (")]
    for r in by_choice.itertuples():
        log.warning("cohort: %s excluded: %s", r.subject, r.reason)
    log.info("cohort: %d of %d subjects included (details in cohort.csv)", len(kept), len(table))
    return kept, table


def _apply_test_from(kept: list[Subject], tsv: Path, column: pd.Series, test_from: dict) -> list[Subject]:
    """Mark the included subjects whose participants.tsv value is a test value; refuse unknown values."""
    test, train = set(test_from["test"]), set(test_from["train"])
    unknown = {s.subject_id: column.get(s.subject_id, "") for s in kept}
    unknown = {sid: v for sid, v in unknown.items() if v not in test | train}
    if unknown:
        shown = ", ".join(f"{sid}={v!r}" for sid, v in sorted(unknown.items())[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise DataError(
            tsv,
            f"column {test_from['column']!r} (data.splits.test_from) has values that are neither test "
            f"{sorted(test)} nor train {sorted(train)}: {shown}{more}",
        )
    marked = [replace(s, predefined_split="test") if column.get(s.subject_id) in test else s for s in kept]
    if kept and not any(s.predefined_split == "test" for s in marked):
        raise DataError(
            tsv,
            f"no included subject has a test value {sorted(test)} in column {test_from['column']!r} "
            "(data.splits.test_from), so there would be no test set",
        )
    return marked


def finish_table(table: pd.DataFrame, rejected: list[dict], splits: dict) -> pd.DataFrame:
    """The cohort table with the build's outcome: rejected subjects (bad input) and each included one's split."""
    table = table.copy()
    problems = {r["subject"]: f"{r['file']}: {r['problem']}" for r in rejected}
    hit = table["subject"].isin(problems)
    table.loc[hit, "status"] = "rejected"
    table.loc[hit, "reason"] = table.loc[hit, "subject"].map(problems)
    test = set(splits["test"])
    val_fold = {s: f["fold"] for f in splits["folds"] for s in f["val"]}
    inside = table["status"] == "included"
    table.loc[inside, "split"] = ["test" if s in test else "trainval" for s in table.loc[inside, "subject"]]
    table.loc[inside, "val_fold"] = [str(val_fold.get(s, -1)) for s in table.loc[inside, "subject"]]
    return table
