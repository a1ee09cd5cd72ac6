"""Atomic, standard-JSON result files: what every result in the pipeline is written with."""

import json
import math

import numpy as np
import pytest

from slimdiff.io import as_float, read_json, write_json


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
