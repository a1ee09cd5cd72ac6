"""A replica of the published OpenNeuro ds004199 tree, for tests: every file name of the real dataset, tiny
generated volumes whose geometry follows the real FLAIR sidecars.

The real images are not available here; their published metadata is, in ``shared/data/ds004199`` (see its
README.md): ``participants.tsv`` (verbatim, with its byte-order mark), ``files.txt`` (every file under
``sub-*/anat/``) and ``flair_meta.tsv`` (per FLAIR sidecar: acquisition type, slice thickness, spacing between
slices, orientation cosines, protocol). What the pipeline must do with the real dataset it must do with this
tree, so the replica keeps exactly the real names (``acq-`` entities that differ between a FLAIR and its ROI,
T1w volumes, JSON sidecars) and the real slice geometry (1 mm 3D volumes, thick 2D slices, sagittal, axial and
coronal orientations); only the voxel count and the content are made up.

Generated content: a noisy ellipsoid "brain" per FLAIR and, for each ROI in files.txt, a small binary blob
near the centre on its FLAIR's exact grid (also for an ROI whose ``acq-`` differs from the FLAIR's: on the
real data that pairing is meant to pass the grid checks). T1w volumes are 4^3 voxels, a shape no FLAIR has,
so choosing one by mistake fails loudly. JSON sidecars hold the ``flair_meta.tsv`` fields (FLAIR) or only
``Modality`` (T1w).
"""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
# 2D ds004199 FLAIRs are 0.7 x 0.7 mm in plane (their protocol names say so; flair_meta.tsv has no pixel
# spacing); 3D ones are 1 mm isotropic ("flair_32ch_iso_1.0", SliceThickness 1).
IN_PLANE_2D_MM = 0.7
IN_PLANE_3D_MM = 1.0
T1W_SHAPE = (4, 4, 4)
# LPS (DICOM) to RAS (NIfTI) world axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def locate_ds004199() -> Path | None:
    """The published-metadata folder, or None. Shared data sits beside the checkout (``<repo>/../shared``, as
    for a developer's checkout and CI's clone) or inside it (``<repo>/shared``, as on a machine that gets a copy)."""
    for base in (REPO / "shared", REPO.parent / "shared"):
        folder = base / "data" / "ds004199"
        if (folder / "files.txt").is_file() and (folder / "participants.tsv").is_file():
            return folder
    return None


@dataclass(frozen=True)
class FlairMeta:
    """One FLAIR sidecar's geometry, as flair_meta.tsv gives it."""

    subject: str
    mr_type: str  # "2D" or "3D"
    slice_thickness: float
    spacing_between_slices: float | None
    orientation: tuple[float, ...]  # ImageOrientationPatientDICOM: row cosine, column cosine (LPS)
    protocol: str

    @property
    def slice_spacing(self) -> float:
        """Voxel size along the slice axis: the centre-to-centre distance when given, else the thickness."""
        return self.spacing_between_slices if self.spacing_between_slices is not None else self.slice_thickness

    @property
    def voxel_mm(self) -> tuple[float, float, float]:
        in_plane = IN_PLANE_2D_MM if self.mr_type == "2D" else IN_PLANE_3D_MM
        return (in_plane, in_plane, self.slice_spacing)

    def shape(self, size: int) -> tuple[int, int, int]:
        """`size`^3 voxels for 3D; for 2D a few thick slices (about a third of `size`, at least 5)."""
        return (size, size, max(5, size // 3)) if self.mr_type == "2D" else (size, size, size)

    def affine(self, size: int) -> np.ndarray:
        """RAS affine: voxel axes along the row cosine, the column cosine and the slice normal, centred on 0."""
        row, col = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        row /= np.linalg.norm(row)  # the published cosines are rounded to 3 decimals: re-orthonormalise
        col -= (col @ row) * row
        col /= np.linalg.norm(col)
        normal = np.cross(row, col)
        rot = _LPS_TO_RAS @ np.column_stack([row, col, normal]) @ np.diag(self.voxel_mm)
        affine = np.eye(4)
        affine[:3, :3] = rot
        affine[:3, 3] = -rot @ ((np.array(self.shape(size)) - 1) / 2)
        return affine

    def sidecar(self) -> dict:
        side = {
            "MRAcquisitionType": self.mr_type,
            "SliceThickness": self.slice_thickness,
            "ImageOrientationPatientDICOM": list(self.orientation),
            "ProtocolName": self.protocol,
        }
        if self.spacing_between_slices is not None:
            side["SpacingBetweenSlices"] = self.spacing_between_slices
        return side


def read_flair_meta(shared: Path) -> dict[str, FlairMeta]:
    table = pd.read_csv(shared / "flair_meta.tsv", sep="\t", dtype=str, keep_default_na=False)
    meta = {}
    for row in table.itertuples(index=False):
        spacing = None if row.spacing_between_slices in ("", "None", "n/a") else float(row.spacing_between_slices)
        cosines = tuple(float(v) for v in row.row_cosine.split(","))
        if len(cosines) != 6:
            raise ValueError(f"{shared / 'flair_meta.tsv'}: {row.subject}: expected 6 orientation cosines")
        meta[row.subject] = FlairMeta(
            row.subject, row.mr_type, float(row.slice_thickness), spacing, cosines, row.protocol
        )
    return meta


def read_files(shared: Path) -> list[str]:
    """files.txt: the published tree's paths under sub-*/anat (relative, POSIX)."""
    return [line.strip() for line in (shared / "files.txt").read_text().splitlines() if line.strip()]


def _kind(name: str) -> str:
    for suffix, kind in (
        ("_FLAIR_roi.nii.gz", "roi"),
        ("_FLAIR.nii.gz", "flair"),
        ("_T1w.nii.gz", "t1w"),
        ("_FLAIR.json", "flair_json"),
        ("_T1w.json", "t1w_json"),
    ):
        if name.endswith(suffix):
            return kind
    raise ValueError(f"files.txt: {name}: not a FLAIR, FLAIR ROI, T1w or sidecar; extend the replica builder")


def _seed(subject: str) -> int:
    return zlib.crc32(subject.encode())


def _ellipsoid(shape: tuple[int, int, int], centre: np.ndarray, radius: np.ndarray) -> np.ndarray:
    grid = np.indices(shape).astype(np.float32)
    return (((grid - centre[:, None, None, None]) / radius[:, None, None, None]) ** 2).sum(0) <= 1


def _blob(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A small ellipsoid near the centre (so a centred crop keeps it), at least one voxel, in-plane radius
    2.5 voxels, through-plane 2.5 voxels on a 3D grid and 1 slice on a thick-slice grid."""
    centre = (np.array(shape) - 1) / 2
    thick = shape[2] < shape[0]
    centre = centre + rng.uniform(-2, 2, 3) * np.array([1, 1, 0.3 if thick else 1])
    blob = _ellipsoid(shape, centre, np.array([2.5, 2.5, 1.0 if thick else 2.5]))
    blob[tuple(np.clip(np.round(centre).astype(int), 0, np.array(shape) - 1))] = True
    return blob


def _flair(shape: tuple[int, int, int], lesion: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    brain = _ellipsoid(shape, (np.array(shape) - 1) / 2, np.array(shape) * 0.45)
    image = brain * (400.0 + 40.0 * rng.standard_normal(shape))
    if lesion is not None:
        image[lesion] += 250.0
    return np.clip(image, 0, None).astype(np.int16)


def build_replica(dest: Path, shared: Path | None = None, size: int = 12) -> Path:
    """Write the replica tree to `dest` (created; must not hold a tree already) and return `dest`.

    `size` is the in-plane voxel count of every FLAIR (3D FLAIRs are `size`^3). participants.tsv,
    participants.json and dataset_description.json are copied byte for byte. Raises ValueError when
    files.txt holds a file kind the builder does not know or a FLAIR without a flair_meta.tsv row, so a
    change in the published metadata is noticed, not silently skipped.
    """
    shared = shared or locate_ds004199()
    if shared is None:
        raise FileNotFoundError("shared/data/ds004199 not found beside or inside the repository")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("participants.tsv", "participants.json", "dataset_description.json"):
        if (shared / name).is_file():
            shutil.copyfile(shared / name, dest / name)

    meta = read_flair_meta(shared)
    by_subject: dict[str, list[str]] = {}
    for rel in read_files(shared):
        by_subject.setdefault(rel.split("/")[0], []).append(rel)

    for subject, rels in sorted(by_subject.items()):
        kinds = {rel: _kind(rel.rsplit("/", 1)[-1]) for rel in rels}
        flairs = [rel for rel, kind in kinds.items() if kind == "flair"]
        rois = [rel for rel, kind in kinds.items() if kind == "roi"]
        if len(flairs) != 1 or subject not in meta:
            raise ValueError(f"files.txt/flair_meta.tsv: {subject}: expected one FLAIR with a flair_meta row")
        geometry = meta[subject]
        shape, affine = geometry.shape(size), geometry.affine(size)
        rng = np.random.default_rng(_seed(subject))
        lesion = _blob(shape, rng) if rois else None
        for rel in rels:
            path = dest / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            kind = kinds[rel]
            if kind == "flair":
                nib.save(nib.Nifti1Image(_flair(shape, lesion, rng), affine), path)
            elif kind == "roi":
                nib.save(nib.Nifti1Image(lesion.astype(np.uint8), affine), path)
            elif kind == "t1w":
                nib.save(nib.Nifti1Image(np.zeros(T1W_SHAPE, np.int16), np.eye(4)), path)
            elif kind == "flair_json":
                path.write_text(json.dumps(geometry.sidecar(), indent=2) + "\n")
            else:
                path.write_text(json.dumps({"Modality": "MR"}) + "\n")
    return dest
