"""Atomic, standard-JSON result files: what every result in the pipeline is written with."""

import json
import math
import os
import shutil
import subprocess

import numpy as np
import pytest
from conftest import dead_pid

from slimdiff.errors import MissingInputError
from slimdiff.io import (
    TableFileError,
    as_float,
    atomic_dir,
    atomic_path,
    read_json,
    read_table,
    scratch_dir,
    write_json,
    write_text,
    writer_tag,
)


def strict_loads(text: str):
    def reject(token):
        raise ValueError(token)

    return json.loads(text, parse_constant=reject)


def test_undefined_values_become_null_with_a_reason(tmp_path):
    path = tmp_path / "m.json"
    write_json(
        path,
        {
            "kid_mean": float("nan"),
            "fid": np.float32(3.5),
            "n": np.int64(4),
            "mmd": {"mean": np.nan, "std": 1.0, "null_reasons": {"mean": "fewer than 10 lesions", "std": "unused"}},
            "per_bin": [1.0, float("inf")],
            "ok": np.bool_(True),
        },
    )
    data = strict_loads(path.read_text())  # no NaN / Infinity tokens
    assert data["kid_mean"] is None and data["null_reasons"] == {"kid_mean": "not defined (NaN)"}
    assert data["fid"] == 3.5 and data["n"] == 4 and data["ok"] is True
    assert data["mmd"]["null_reasons"] == {"mean": "fewer than 10 lesions"}  # reasons only for what is null
    assert data["per_bin"] == [1.0, None]
    assert read_json(path) == data and math.isnan(as_float(data["kid_mean"])) and as_float(2) == 2.0


def test_a_finite_result_has_no_reasons(tmp_path):
    write_json(tmp_path / "a.json", {"a": 1.0, "null_reasons": {"a": "stale"}})
    assert read_json(tmp_path / "a.json") == {"a": 1.0}


def test_read_json_rejects_nan_and_names_the_file(tmp_path):
    bad = tmp_path / "old.json"
    bad.write_text('{"kid": NaN}')
    with pytest.raises(ValueError, match=r"old\.json.*NaN"):
        read_json(bad)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_outputs_get_the_mode_a_plain_write_would(tmp_path, umask):
    """mkstemp/mkdtemp make owner-only temporaries; a result must not stay unreadable to a shared group."""
    old = os.umask(umask)
    try:
        write_text(tmp_path / "table.md", "x\n")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "inside.txt").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "table.md").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~umask


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is not installed")
def test_dvc_ignores_what_a_killed_atomic_writer_leaves_behind(tmp_path):
    """SIGKILL skips the writers' clean-up: their temporaries must not be hashed and pushed with the results."""
    from conftest import REPO

    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    shutil.copy(REPO / ".dvcignore", tmp_path / ".dvcignore")
    left = [
        "results/metrics/.summary.json.k2j3_x.tmp",  # atomic_path
        "results/figures/.zbin.png.a1b2.png.tmp",
        "results/cache/.staging.q8w9e7",  # the cache's per-subject staging folder, before and after it was named
        "results/cache/.staging.node1-pid42.q8w9e7.tmp",  # for its writer (scratch_dir)
        "results/cache/.arrays.node1-pid42.r5t6y7.tmp",
        "results/raw/.sub-01.ab12.tmp",  # atomic_dir, new and old
        "results/raw/.sub-01.cd34.old",
    ]
    kept = ["results/metrics/summary.json", "results/cache/images.npy"]
    for name in left + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    out = subprocess.run(["dvc", "check-ignore", *left, *kept], cwd=tmp_path, capture_output=True, text=True)
    assert sorted(out.stdout.split()) == sorted(left)


def test_a_writer_removes_what_a_killed_writer_of_the_same_target_left(tmp_path):
    """A SIGKILL'd writer's temporaries (a whole folder, a 400 MB checkpoint) go at the next write of the same
    target, when their writer ran on this host and is gone; a live writer's, another node's (its process cannot
    be checked from here), another target's and an old-style name stay."""
    dead, live = writer_tag(dead_pid()), writer_tag()
    leftovers = {
        f".samples.{dead}.ab12_x.tmp": True,  # atomic_dir: the new folder, and the old one mid-swap
        f".samples.{dead}.cd34.old": True,
        f".samples.{live}.ef56.tmp": False,
        f".samples.other-node-pid{dead.rsplit('pid', 1)[1]}.gh78.tmp": False,
        ".samples.ij90.tmp": False,
        f".samples2.{dead}.kl12.tmp": False,
        f".last.ckpt.{dead}.mn34.ckpt.tmp": True,  # atomic_path with a suffix
        f".last.ckpt.{live}.op56.ckpt.tmp": False,
    }
    for name in leftovers:
        if name.startswith(".samples"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "zbin00.npz").write_bytes(b"x")
        else:
            (tmp_path / name).write_bytes(b"x")
    with atomic_dir(tmp_path / "samples") as staged:
        (staged / "zbin00.npz").write_bytes(b"new")
    with atomic_path(tmp_path / "last.ckpt", suffix=".ckpt") as tmp:
        tmp.write_bytes(b"new")
    kept = {name for name, removed in leftovers.items() if not removed}
    assert {p.name for p in tmp_path.iterdir()} == kept | {"samples", "last.ckpt"}


def test_a_scratch_folder_is_hidden_named_for_its_writer_and_gone_at_the_end(tmp_path):
    with pytest.raises(RuntimeError), scratch_dir(tmp_path / "staging") as scratch:
        assert scratch.parent == tmp_path and scratch.name.startswith(f".staging.{writer_tag()}.")
        (scratch / "sub-01.npz").write_bytes(b"x")
        raise RuntimeError("the job fails")
    assert list(tmp_path.iterdir()) == []


def test_read_table_names_the_file_that_is_empty_malformed_or_missing(tmp_path):
    good = tmp_path / "per_zbin.csv"
    good.write_text("z_bin,kid\n0,0.1\n")
    assert read_table(good)["kid"].tolist() == [0.1]
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TableFileError, match=r"empty\.csv: cannot read it as a table \(EmptyDataError"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "torn.csv").write_text('z_bin,kid\n0,"0.1\n')  # cut inside a quoted field
    with pytest.raises(TableFileError, match=r"torn\.csv: cannot read it as a table \(ParserError"):
        read_table(tmp_path / "torn.csv")
    with pytest.raises(MissingInputError, match=r"gone\.csv: file not found"):
        read_table(tmp_path / "gone.csv")
