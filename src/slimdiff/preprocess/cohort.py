"""The stage over a cohort: which subjects there are, one subject's job, and the gathering step.

The derivatives root is itself a BIDS tree the cache reads like a raw cohort: ``participants.tsv`` (the raw
table's rows, less any subject rejected here), ``dataset_description.json`` (DatasetType derivative), and one
folder per subject (:mod:`.subject`). QC files go under ``qc/``, outside what the ingest reads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from slimdiff.config import ConfigError
from slimdiff.data.ingest import DataError, discover, read_participants
from slimdiff.io import write_text
from slimdiff.preprocess import qc
from slimdiff.preprocess.errors import PreprocessError
from slimdiff.preprocess.subject import names, stage_enabled, write_subject

log = logging.getLogger(__name__)

REJECTED_COLUMNS = ["subject", "file", "problem"]


def subject_ids(raw_dir: str | Path) -> list[str]:
    """The subjects of a BIDS cohort as the ingest lists them (participants.tsv, else sub-* folders)."""
    raw_dir = Path(raw_dir)
    tsv = raw_dir / "participants.tsv"
    if tsv.exists():
        return [s.strip() for s in read_participants(tsv)["participant_id"]]
    return sorted(p.name for p in raw_dir.glob("sub-*") if p.is_dir())


def preprocess_one(raw_dir: str | Path, subject_id: str, out_dir: str | Path, cfg: dict, on_bad_subject: str) -> dict:
    """Rule preprocess: find `subject_id` in the raw BIDS cohort and write its derivatives folder `out_dir`."""
    subjects = {s.subject_id: s for s in discover(raw_dir, "bids", {"brain_mask_suffix": None})}
    if subject_id not in subjects:
        raise DataError(raw_dir, f"subject {subject_id} not found", subject_id)
    return write_subject(subjects[subject_id], cfg, out_dir, on_bad_subject)


def gather(
    raw_dir: str | Path, subject_dirs: list[str | Path], out_root: str | Path, qc_cfg: dict, on_bad_subject: str
) -> pd.DataFrame:
    """Rule preprocess_cohort: check every subject's result, write participants.tsv, the QC table and figure.

    An implausible result (`preprocess.qc`) stops with the subject and the reason, or under
    ``on_bad_subject: skip`` leaves the subject out of participants.tsv with a row in qc/rejected.csv.
    """
    out_root = Path(out_root)
    rows = []
    for folder in subject_dirs:
        sid = Path(folder).name
        sidecar = json.loads((Path(folder) / names(sid)["sidecar"]).read_text())
        rows.append(qc.row(sidecar))
    table = pd.DataFrame(rows, columns=qc.COLUMNS)
    rejected = []
    for i, r in table.iterrows():
        reason = qc.implausible(r.to_dict(), qc_cfg)
        if reason is None:
            continue
        if on_bad_subject == "stop":
            raise PreprocessError(Path(subject_dirs[i]), f"subject {r['subject']}: {reason}", r["subject"])
        log.warning("skipping subject %s: %s", r["subject"], reason)
        table.loc[i, ["status", "reason"]] = ["rejected", reason]
        rejected.append({"subject": r["subject"], "file": str(subject_dirs[i]), "problem": reason})
    if len(rejected) == len(table):
        raise PreprocessError(out_root, "every subject was rejected by the preprocessing QC; see qc/cohort.csv")

    keep = set(table.loc[table["status"] == "ok", "subject"])
    tsv = Path(raw_dir) / "participants.tsv"
    if tsv.exists():
        participants = read_participants(tsv)
        participants = participants[participants["participant_id"].str.strip().isin(keep)]
    else:
        participants = pd.DataFrame({"participant_id": sorted(keep)})
    (out_root / "qc").mkdir(parents=True, exist_ok=True)
    write_text(out_root / "qc" / "cohort.csv", table.to_csv(index=False))
    write_text(out_root / "qc" / "rejected.csv", pd.DataFrame(rejected, columns=REJECTED_COLUMNS).to_csv(index=False))
    qc.cohort_figure(table, out_root / "qc" / "cohort.png")
    description = {
        "Name": "SLIM-Diff preprocessed FLAIR (skull-stripped, bias-corrected, KDE-normalised)",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "slimdiff-preprocess", "Description": "see each sub-X_desc-preproc_FLAIR.json"}],
        "SourceDatasets": [{"URL": str(Path(raw_dir).resolve())}],
    }
    write_text(out_root / "dataset_description.json", json.dumps(description, indent=2) + "\n")
    write_text(out_root / "participants.tsv", participants.to_csv(sep="\t", index=False))  # last: marks it complete
    return table


def check_config(cfg: dict, data: dict) -> None:
    """Refuse combinations the stage cannot honour; called with the stage on or off, because an as-acquired
    synthetic cohort (heads with scalp and skull) without brain extraction would reach the cache unstripped and
    train on skulls without any error."""
    synthetic = data.get("synthetic", {})
    if (
        data.get("source") == "synthetic"
        and synthetic.get("as_acquired")
        and cfg["brain_extraction"]["backend"]
        in (
            "none",
            "mask-file",
        )
    ):
        raise ConfigError(
            "data.synthetic.as_acquired: true writes heads with scalp and skull (no brain masks beside them), but "
            f"preprocess.brain_extraction.backend is {cfg['brain_extraction']['backend']!r}; set "
            "preprocess.brain_extraction.backend to hd-bet (or synthstrip), or data.synthetic.as_acquired: false"
        )
    if not stage_enabled(cfg):
        return
    if data["layout"] != "bids":
        raise ConfigError("preprocess: the stage reads BIDS cohorts only (data.layout: bids)")
    ingest = data["ingest"]
    if ingest.get("brain_mask_suffix") or not ingest.get("skull_stripped", True):
        raise ConfigError(
            "data.ingest.skull_stripped/brain_mask_suffix mask the FLAIR inside the cache; with the preprocess "
            "stage enabled the brain mask comes from preprocess.brain_extraction (use backend mask-file with "
            "preprocess.brain_extraction.mask_suffix) and the cache reads skull-stripped derivatives"
        )
