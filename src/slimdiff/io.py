"""Atomic writes: a killed job must never leave a file that looks finished.

Every writer goes to a temporary sibling in the same directory (same file system) and renames it into
place, which POSIX makes atomic. A temporary's name carries its writer's host and PID
(`.model.pt.node07-pid4242.k2j3_x.tmp`), so the next writer of the same target removes what a writer killed with
SIGKILL left (a 400 MB checkpoint, a whole cache folder) and leaves alone a live writer's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from slimdiff.errors import MissingInputError, SlimdiffInputError

log = logging.getLogger(__name__)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask sets it, which races with other threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _usual_mode(path: Path, directory: bool = False) -> None:
    """Give a temporary file or folder the mode a plain open() or mkdir() would have: mkstemp and mkdtemp make
    them owner-only (0600, 0700), and the rename would carry that onto results that collaborators on a shared
    cluster account must read."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "-", platform.node())[:63] or "host"


def writer_tag(pid: int | None = None) -> str:
    """`{host}-pid{pid}` (this process's PID by default): the part of a temporary's name that names its writer."""
    return f"{_host()}-pid{os.getpid() if pid is None else pid}"


def _temporary_prefix(target: Path) -> str:
    return f".{target.name}.{writer_tag()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_dead_writers_leftovers(target: str | Path) -> list[Path]:
    """Remove the temporaries of `target` that a writer on this host left when it was killed before its clean-up
    could run (SIGKILL: the OOM killer, SLURM's KillWait after a time limit); returns what it removed.

    Only a temporary whose writer ran on this host and whose PID no longer exists is removed: a live writer's
    (another thread of this process, another job) and one from another node of a shared file system, whose
    process cannot be checked from here, stay. Temporaries named before the host and PID were in the name stay too.
    """
    target = Path(target)
    # .{name}.{host}-pid{pid}.{mkstemp's random part}{the writer's suffix, e.g. .npy}.tmp (or .old)
    ours = r"(?P<host>[A-Za-z0-9-]+)-pid(?P<pid>\d+)\.[a-z0-9_]+(\.[^.]+)*\.(tmp|old)"
    pattern = re.compile(re.escape(f".{target.name}.") + ours)
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        found = pattern.fullmatch(entry.name)
        if not found or found["host"] != _host() or _alive(int(found["pid"])):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        log.info("removed %s, left by a writer (PID %s) killed before it could clean up", path, found["pid"])
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    `suffix` lets writers that infer the format from the extension (matplotlib, numpy) see the right one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_writers_leftovers(target)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(target), suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _usual_mode(tmp_path)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | Path, obj: Any) -> None:
    """Standard JSON (RFC 8259): NaN and infinities become null, and their dict says why in `null_reasons`.

    `jq`, JavaScript and `dvc metrics` reject the NaN token Python writes by default. A producer that knows why
    a value is undefined puts `null_reasons: {key: why}` beside it; any other non-finite value gets a generic
    reason, so a null is never silent.
    """
    text = json.dumps(_finite(_plain(obj)), indent=2, sort_keys=False, allow_nan=False)
    write_text(target, text + "\n")


class JSONFileError(SlimdiffInputError, ValueError):
    """A JSON file that is not valid standard JSON; the message names the file. A ValueError, like the
    json module's own parse errors."""


def read_json(path: str | Path) -> Any:
    """Parse a JSON file strictly (NaN/Infinity tokens are an error that names the file)."""

    def reject(token: str) -> Any:
        raise JSONFileError(f"{path}: non-standard JSON token {token}")

    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise MissingInputError(f"{path}: file not found") from None
    try:
        return json.loads(text, parse_constant=reject)
    except json.JSONDecodeError as exc:
        raise JSONFileError(f"{path}: not valid JSON ({exc})") from None


class TableFileError(SlimdiffInputError, ValueError):
    """A CSV or TSV that cannot be parsed as a table; the message names the file."""


def read_table(path: str | Path, **read_csv_args: Any) -> Any:
    """pandas.read_csv that names the file when it is missing, empty or malformed (pandas' own messages for the
    last two do not: a truncated metrics table pulled from a remote would otherwise fail without its name)."""
    import pandas as pd

    try:
        return pd.read_csv(path, **read_csv_args)
    except FileNotFoundError:
        raise MissingInputError(f"{path}: file not found") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TableFileError(f"{path}: cannot read it as a table ({type(exc).__name__}: {exc})") from None


def as_float(value: Any) -> float:
    """A metric value read back from JSON: null (undefined) -> NaN, so arithmetic and pandas treat it as missing."""
    return float("nan") if value is None else float(value)


def _plain(obj: Any) -> Any:
    """numpy scalars/arrays and paths -> the JSON types, recursively."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, str | bool | int | float) or obj is None:
        return obj
    return _plain(_json_default(obj))


def _why_not_finite(value: float) -> str:
    return "not defined (NaN)" if math.isnan(value) else f"infinite ({value})"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: _finite(v) for k, v in obj.items()}
    reasons = dict(out.get("null_reasons") or {})
    for key, value in obj.items():
        if isinstance(value, float) and not math.isfinite(value):
            reasons.setdefault(key, _why_not_finite(value))
    reasons = {k: v for k, v in reasons.items() if k in out and out[k] is None}
    if reasons:
        out["null_reasons"] = reasons
    else:
        out.pop("null_reasons", None)
    return out


def write_npy(target: str | Path, array: np.ndarray) -> None:
    with atomic_path(target, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


@contextlib.contextmanager
def scratch_dir(target: str | Path) -> Iterator[Path]:
    """A temporary working folder beside `target` (hidden, named for `target`, its writer's host and PID), removed
    at the end however the block ends; one a killed writer left is removed by the next (see module docstring)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_writers_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a whole directory in a temporary sibling and swap it into place at the end.

    An existing `target` is replaced only after the new one is complete.
    """
    target = Path(target)
    with scratch_dir(target) as tmp:
        yield tmp
        _usual_mode(tmp, directory=True)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target), suffix=".old", dir=target.parent))
            os.rmdir(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in chunks (weights and models are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | np.bool_):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
