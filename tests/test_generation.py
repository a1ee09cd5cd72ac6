"""Generation: seed invariance, output format, the spec parser (every error), the CLIs and the export."""

import json
import os
import shutil
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from slimdiff.generation.export import export_samples
from slimdiff.generation.outputs import read_samples
from slimdiff.generation.runner import generate_to_dir
from slimdiff.generation.sampling import Condition, generate_samples, sample_seed
from slimdiff.generation.spec import SpecError, parse_spec
from slimdiff.model.file import load_denoiser


def sample(model, conditions, **kw):
    net, diffusion, payload = load_denoiser(model)
    kw = {"steps": 5, "eta": 0.2, "progress": False, **kw}
    return generate_samples(net, diffusion, payload, conditions, **kw)


def test_same_sample_whatever_the_batching(tiny_model):
    conds = [Condition(z, c, 3) for z in range(4) for c in (0, 1)]
    together = sample(tiny_model, conds, seed=9, replica=1, batch_size=7)
    for z in range(4):
        alone = sample(tiny_model, [Condition(z, 1, 3), Condition(z, 0, 3)], seed=9, replica=1, batch_size=2)
        for cls in (0, 1):
            a = (together["z_bin"] == z) & (together["class"] == cls)
            b = alone["class"] == cls
            assert np.array_equal(together["k"][a], alone["k"][b])
            assert np.allclose(together["images"][a], alone["images"][b], atol=1e-5)
            assert np.allclose(together["masks"][a], alone["masks"][b], atol=1e-5)


def test_seed_and_replica_change_the_samples(tiny_model):
    c = [Condition(2, 1, 2)]
    a, b = sample(tiny_model, c, seed=1), sample(tiny_model, c, seed=1)
    assert np.array_equal(a["images"], b["images"])
    assert not np.allclose(a["images"], sample(tiny_model, c, seed=2)["images"])
    assert not np.allclose(a["images"], sample(tiny_model, c, seed=1, replica=3)["images"])
    assert sample_seed(1, 0, 2, 1, 0) != sample_seed(1, 0, 2, 1, 1)


def test_output_files(tiny_model, tmp_path):
    conds = [Condition(z, c, 2) for z in (0, 3) for c in (0, 1)]
    written = generate_to_dir(
        tiny_model, tmp_path, conds, seed=4, replica=2, batch_size=3, device="cpu", sampler_overrides={"steps": 4}
    )
    assert [p.name for p in written] == ["zbin00.npz", "zbin03.npz"]
    s = read_samples(tmp_path / "zbin03.npz")
    assert s["images"].dtype == np.float16 and s["images"].shape == (4, 32, 32)
    assert s["masks"].min() >= -1 and s["masks"].max() <= 1
    assert len(np.unique(s["masks"])) > 2, "masks are stored continuous, not binarised"
    assert set(s["z_bin"]) == {3} and sorted(s["class"]) == [0, 0, 1, 1]
    assert np.array_equal(s["token"], s["z_bin"] + 4 * s["class"])
    assert s["meta"]["replica"] == 2 and s["meta"]["sampler"]["steps"] == 4 and len(s["meta"]["model_sha256"]) == 64
    manifest = pd.read_csv(tmp_path / "zbin03.csv")
    assert len(manifest) == 4 and {"seed", "k", "mask_area_px_tau0"} <= set(manifest.columns)
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"


def test_samples_of_another_generation_are_not_written_over(tiny_model, tmp_path):
    """A rerun rewrites its own z-bin files; another replica, seed or sampler into the same folder is refused."""
    from slimdiff.errors import OutputExistsError

    def gen(**kw):
        kw = {"seed": 4, "replica": 0, "device": "cpu", "grid": False, "sampler_overrides": {"steps": 2}, **kw}
        return generate_to_dir(tiny_model, tmp_path, [Condition(1, 1, 2)], **kw)

    first = read_samples(gen()[0])
    assert np.array_equal(read_samples(gen()[0])["images"], first["images"])  # the same generation again
    for change, differ in (({"replica": 1}, "replica"), ({"seed": 5}, "seed"), ({"dtype": "float32"}, "dtype")):
        with pytest.raises(OutputExistsError, match=f"zbin01.npz: holds samples of another generation.*{differ}"):
            gen(**change)
    with pytest.raises(OutputExistsError, match="differ in sampler"):
        gen(sampler_overrides={"steps": 3})
    assert np.array_equal(read_samples(tmp_path / "zbin01.npz")["images"], first["images"])


def test_sampling_uses_the_cache_token_and_the_embedding_null_token(tiny_model, monkeypatch):
    """The tokens the network sees are the slice cache's, and guidance drops them to the embedding's null."""
    from slimdiff.data.slices import token
    from slimdiff.generation import sampling
    from slimdiff.model.conditioning import ConditionEmbedding

    net, diffusion, payload = load_denoiser(tiny_model)
    payload["run_cfg"]["model"]["cfg_null_token"] = True  # the guidance wrapper is replaced below
    seen = {"tokens": []}

    def guidance(model, null_token, scale):
        seen["null_token"] = null_token
        return model

    def ddim(model, diffusion, x_T, tokens, *args, **kwargs):
        seen["tokens"].append(tokens.numpy())
        return x_T

    monkeypatch.setattr(sampling, "classifier_free_guidance", guidance)
    monkeypatch.setattr(sampling, "ddim_sample", ddim)
    conds = [Condition(1, 0, 2), Condition(3, 1, 2)]
    out = generate_samples(net, diffusion, payload, conds, seed=0, batch_size=3, guidance_scale=2.0, progress=False)
    expected = token(out["z_bin"], out["class"], payload["data_info"]["z_bins"])
    assert np.array_equal(np.concatenate(seen["tokens"]), expected) and np.array_equal(out["token"], expected)
    embedding = next(m for m in net.modules() if isinstance(m, ConditionEmbedding))
    assert seen["null_token"] == embedding.null_token == 2 * payload["data_info"]["z_bins"]


def write_spec(tmp_path, model, **fields):
    spec = {"checkpoint_path": str(model), "output_dir": str(tmp_path / "out"), "seed": 3, "device": "cpu", **fields}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_detailed_spec_keeps_order(tiny_model, tmp_path):
    plan = parse_spec(
        write_spec(
            tmp_path, tiny_model, samples=[{"zbin": 3, "lesion": 2}, {"zbin": 1, "control": 1}], _comment="ignored"
        )
    )
    assert [(c.z_bin, c.cls, c.n) for c in plan.conditions] == [(3, 1, 2), (1, 0, 1)]
    assert plan.total == 3


@pytest.mark.parametrize(
    "zbins, expected",
    [("all", [0, 1, 2, 3]), ("1-2", [1, 2]), ("0,3", [0, 3]), ([2, 0], [0, 2]), (1, [1])],
)
def test_compact_spec_forms(tiny_model, tmp_path, zbins, expected):
    plan = parse_spec(write_spec(tmp_path, tiny_model, defaults={"control": 1, "lesion": 2, "zbins": zbins}))
    assert sorted({c.z_bin for c in plan.conditions}) == expected
    assert plan.total == 3 * len(expected)


def test_compact_overrides_replace_and_add(tiny_model, tmp_path):
    plan = parse_spec(
        write_spec(
            tmp_path,
            tiny_model,
            defaults={"control": 1, "lesion": 1, "zbins": "0-1"},
            overrides=[{"zbin": 1, "lesion": 5}, {"zbin": 3, "control": 0}],
        )
    )
    table = {(c.z_bin, c.cls): c.n for c in plan.conditions}
    assert table == {(0, 0): 1, (0, 1): 1, (1, 0): 1, (1, 1): 5, (3, 1): 1}


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"format": "tabular", "samples": []}, "format: must be 'detailed' (a 'samples' list) or 'compact'"),
        ({}, "unknown format None"),
        ({"samples": [{"zbin": 1, "lesion": 1}, {"zbin": 1, "control": 2}]}, "samples.1.zbin: duplicate z-bin 1"),
        ({"defaults": {"zbins": "1,1"}}, "defaults.zbins: duplicate z-bins [1]"),
        ({"defaults": {"zbins": "all"}, "overrides": [{"zbin": 2}, {"zbin": 2}]}, "overrides.1.zbin: duplicate"),
        ({"samples": [{"zbin": 4, "lesion": 1}]}, "samples.0.zbin: z-bin 4 is out of range"),
        ({"samples": [{"zbin": -1, "lesion": 1}]}, "samples.0.zbin: z-bin -1 is out of range"),
        ({"defaults": {"zbins": "2-9"}}, "defaults.zbins: z-bin 4 is out of range"),
        ({"samples": [{"zbin": 0, "lesion": -2}]}, "samples.0.lesion: must be a non-negative integer, got -2"),
        ({"samples": [{"zbin": 0, "control": 1.5}]}, "samples.0.control: must be a non-negative integer"),
        ({"defaults": {"lesion": "3"}}, "defaults.lesion: must be a non-negative integer, got '3'"),
        ({"samples": [{"zbin": 0}], "colour": "red"}, "unknown keys ['colour'] (comments must start with '_')"),
    ],
)
def test_spec_errors(tiny_model, tmp_path, fields, message):
    with pytest.raises(SpecError) as err:
        parse_spec(write_spec(tmp_path, tiny_model, **fields))
    assert f"spec.json: {message}" in str(err.value)


def test_spec_errors_name_the_key_path_of_every_problem(tmp_path):
    """The spec schema reports each problem at its key path, all at once, before the model is read."""
    fields = {
        "samples": [{"zbin": 0, "lesion": 1}, {"zbin": 1, "lesions": 2}, {"lesion": 1}, 3, {"zbin": "2"}],
        "defaults": {"zbins": 2.5},
        "dtype": "bfloat16",
        "seed": 1.0,
    }
    spec = write_spec(tmp_path, tmp_path / "missing.pt", **fields)
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    lines = str(err.value).splitlines()
    assert "model file not found" not in str(err.value)
    assert lines == [
        f"{spec}: {problem}"
        for problem in (  # one line each, in key order
            "defaults.zbins: must be 'all', 'a-b', 'a,b,c', a list of integers or an integer, got 2.5",
            "dtype: must be float16 or float32, got 'bfloat16'",
            "samples.1: unknown keys ['lesions'] (comments must start with '_')",
            "samples.2: missing required key 'zbin'",
            "samples.3: must be an object with a 'zbin' and 'control' and/or 'lesion' counts, got 3",
            "samples.4.zbin: must be an integer z-bin, got '2'",
            "seed: must be a non-negative integer, got 1.0",
        )
    ]


def test_spec_schema_fills_the_defaults():
    from pathlib import Path

    from slimdiff.generation.spec import validate_spec

    spec = validate_spec(
        {"checkpoint_path": "m.pt", "output_dir": "o", "samples": [{"zbin": 1, "_note": "x"}], "overrides": []},
        Path("spec.json"),
    )
    filled = {k: spec[k] for k in ("seed", "device", "replica", "batch_size", "dtype")}
    assert filled == {"seed": 42, "device": "auto", "replica": 0, "batch_size": 32, "dtype": "float16"}
    assert spec["samples"] == [{"zbin": 1, "_note": "x", "control": 0, "lesion": 0}]
    with pytest.raises(SpecError, match="spec.json: missing required key 'output_dir'"):
        validate_spec({"checkpoint_path": "m.pt"}, Path("spec.json"))
    with pytest.raises(SpecError, match="spec.json: must be a JSON object, got"):
        validate_spec([1], Path("spec.json"))


def test_spec_missing_model(tmp_path):
    with pytest.raises(SpecError, match="checkpoint_path: .*missing.pt: model file not found"):
        parse_spec(write_spec(tmp_path, tmp_path / "missing.pt", samples=[]))


def test_spec_config_mismatch(tiny_model, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"diffusion": {"prediction": "epsilon"}, "data": {"cache": {"z_bins": 30}}}))
    with pytest.raises(SpecError, match="does not match the model: diffusion.prediction.*z_bins"):
        parse_spec(write_spec(tmp_path, tiny_model, config_path=str(cfg), samples=[]))
    # the run's own config.yaml matches
    plan = parse_spec(
        write_spec(
            tmp_path, tiny_model, config_path=str(tiny_model.parent / "config.yaml"), samples=[{"zbin": 0, "lesion": 1}]
        )
    )
    assert plan.total == 1


def cli(capsys, *args) -> SimpleNamespace:
    """The spec command in this process (its imports are paid once per worker): returncode, stdout, stderr."""
    from slimdiff.cli.generate_spec import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


@pytest.mark.slow
def test_spec_cli_dry_run_validate_and_errors(tiny_model, tmp_path, capsys):
    spec = write_spec(tmp_path, tiny_model, defaults={"control": 1, "lesion": 2, "zbins": "0-1"})
    dry = cli(capsys, "--spec", str(spec), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "total  6 samples" in dry.stdout and "estimated time:" in dry.stdout
    assert not (tmp_path / "out").exists(), "a dry run writes nothing"
    ok = cli(capsys, "--spec", str(spec), "--validate-only")
    assert ok.returncode == 0 and "valid (6 samples over 2 z-bins)" in ok.stdout
    bad = write_spec(tmp_path, tiny_model, samples=[{"zbin": 9}])
    err = cli(capsys, "--spec", str(bad), "--validate-only")
    assert err.returncode == 2 and "out of range" in err.stderr and "Traceback" not in err.stderr


@pytest.mark.slow
def test_spec_cli_generates(tiny_model, tmp_path, capsys):
    spec = write_spec(tmp_path, tiny_model, samples=[{"zbin": 2, "control": 1, "lesion": 1}], batch_size=2)
    done = cli(capsys, "--spec", str(spec))
    assert done.returncode == 0, done.stderr
    assert len(read_samples(tmp_path / "out" / "zbin02.npz")["seed"]) == 2


def test_generate_cli(tiny_model, tmp_path):
    from slimdiff.cli import generate

    assert (
        generate.main(
            [
                "--model",
                str(tiny_model),
                "--out",
                str(tmp_path / "g"),
                "--zbins",
                "1,2",
                "--classes",
                "1",
                "--n-per-condition",
                "2",
                "--steps",
                "3",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "g").glob("*.npz")) == ["zbin01.npz", "zbin02.npz"]
    assert generate.main(["--model", str(tiny_model), "--out", str(tmp_path / "h"), "--zbins", "7"]) == 2


@pytest.mark.parametrize("fmt", ["nnunet", "nifti"])
def test_export(tiny_model, tmp_path, fmt):
    conds = [Condition(1, 1, 2), Condition(1, 0, 1)]
    files = generate_to_dir(tiny_model, tmp_path / "s", conds, seed=1, device="cpu", sampler_overrides={"steps": 3})
    n = export_samples(files, tmp_path / "x", fmt, tau=0.0)
    assert n == 3
    out = tmp_path / "x"
    if fmt == "nnunet":
        dataset = json.loads((out / "dataset.json").read_text())
        assert dataset["numTraining"] == 3 and dataset["labels"] == {"background": 0, "lesion": 1}
        labels = sorted((out / "labelsTr").glob("*.nii.gz"))
        images = sorted((out / "imagesTr").glob("*_0000.nii.gz"))
        assert len(labels) == len(images) == 3
        label = nib.load(labels[0])
    else:
        label = nib.load(sorted(out.glob("*_mask.nii.gz"))[0])
        assert len(list(out.glob("*_image.nii.gz"))) == 3
    assert set(np.unique(label.get_fdata())) <= {0.0, 1.0} and label.shape == (32, 32, 1)
    s = read_samples(files[0])
    row = int(np.flatnonzero((s["class"] == 0) & (s["k"] == 0))[0])
    expected = (s["masks"][row].astype(np.float32) > 0).astype(float)
    first = sorted((out / "labelsTr").glob("*.nii.gz"))[0] if fmt == "nnunet" else sorted(out.glob("*_mask.nii.gz"))[0]
    assert first.name.startswith("SlimDiffSynthetic_x0_lp1p5_sc0p5_f0_r0_s1_z01_c0_k0000")
    assert np.array_equal(nib.load(first).get_fdata()[:, :, 0], expected)


def test_export_never_writes_over_a_case(tiny_model, tmp_path):
    """Replicas share a dataset under distinct names; a filled folder needs --append, which adds, never replaces."""
    from slimdiff.cli import export as export_cli
    from slimdiff.errors import OutputExistsError, SlimdiffInputError

    def gen(name, replica):
        conds = [Condition(1, 1, 2), Condition(2, 0, 1)]
        kw = {"seed": 1, "device": "cpu", "sampler_overrides": {"steps": 2}, "grid": False}
        return generate_to_dir(tiny_model, tmp_path / name, conds, replica=replica, **kw)

    r0, r1, r2 = gen("r0", 0), gen("r1", 1), gen("r2", 2)
    out = tmp_path / "Dataset500_Synth"
    assert export_samples(r0 + r1 + r0[:1], out) == 6  # a file named twice counts once

    def cases():
        labels = sorted(p.name for p in (out / "labelsTr").glob("*.nii.gz"))
        assert json.loads((out / "dataset.json").read_text())["numTraining"] == len(labels)
        assert len(list((out / "imagesTr").glob("*_0000.nii.gz"))) == len(labels)
        return labels

    assert len(cases()) == 6 and sum("_r1_" in name for name in cases()) == 3
    with pytest.raises(OutputExistsError, match=f"{out}: not empty.*--append"):
        export_samples(r2, out)
    with pytest.raises(OutputExistsError, match="is already in the dataset"):
        export_samples(r1 + r2, out, append=True)
    assert len(cases()) == 6, "a refused append leaves the dataset as it was"
    with pytest.raises(SlimdiffInputError, match="tau"):
        export_samples(r2, out, tau=0.5, append=True)
    assert export_samples(r2, out, append=True) == 3
    assert len(cases()) == 9 and sum("_r2_" in name for name in cases()) == 3

    copy = tmp_path / "copy"  # the same samples under another folder: same ids, refused
    copy.mkdir()
    shutil.copy(r0[0], copy / r0[0].name)
    with pytest.raises(SlimdiffInputError, match="same run, fold, replica, seed"):
        export_samples([r0[0], copy / r0[0].name], tmp_path / "dup")

    argv = ["--samples", str(tmp_path / "r2"), "--out", str(out)]
    assert export_cli.main(argv) == 2 and len(cases()) == 9
    assert export_cli.main([*argv, "--append"]) == 2  # already there
    assert export_cli.main(["--samples", str(tmp_path / "r2"), "--out", str(tmp_path / "new")]) == 0


def test_samples_say_whether_the_model_file_holds_ema_weights(tiny_model, tmp_path):
    """ema_weights in a sample file comes from the model file's `weights`, not from a constant."""
    import torch

    from slimdiff.model.file import read_model_file, save_model

    payload = read_model_file(tiny_model)
    raw = tmp_path / "raw.pt"
    parts = (payload["state_dict"], payload["run_cfg"], payload["data_info"], payload["provenance"])
    save_model(raw, *parts, weights="raw")
    older = {k: v for k, v in payload.items() if k != "weights"}  # a file written before the key existed
    torch.save(older, tmp_path / "older.pt")
    for model, ema in ((tiny_model, True), (raw, False), (tmp_path / "older.pt", True)):
        out = tmp_path / model.stem
        kw = {"seed": 1, "device": "cpu", "grid": False, "sampler_overrides": {"steps": 1}}
        meta = read_samples(generate_to_dir(model, out, [Condition(0, 1, 1)], **kw)[0])["meta"]
        assert meta["ema_weights"] is ema, model
        assert meta["dtype"] == "float16" and meta["compute_dtype"] == "float32"  # the CPU computes in float32


def test_compute_dtype_is_chosen_from_the_storage_dtype_and_the_device():
    from slimdiff.config import ConfigError
    from slimdiff.generation.sampling import compute_dtype_for

    assert compute_dtype_for("float16", "cuda") == compute_dtype_for("float16", "cuda:1") == "bfloat16"
    assert compute_dtype_for("float32", "cuda") == "float32"
    assert compute_dtype_for("float16", "cpu") == compute_dtype_for("float32", "cpu") == "float32"
    assert compute_dtype_for("float16", "cpu", "bfloat16") == "bfloat16"  # generation.compute_dtype asked for
    assert compute_dtype_for("float16", "cuda", "float32") == "float32"
    with pytest.raises(ConfigError, match="generation.compute_dtype 'float16'"):
        compute_dtype_for("float16", "cpu", "float16")


def test_bfloat16_sampling_on_the_cpu(tiny_model, tmp_path):
    """generation.compute_dtype: bfloat16 runs the network under bf16 autocast on the CPU too (the pilot's
    setting): the same samples within bf16 rounding, recorded in the file, and never mixed with float32 ones."""
    import torch

    from slimdiff.errors import OutputExistsError

    net, diffusion, payload = load_denoiser(tiny_model)
    seen = []
    net.unet.conv_in.conv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    kw = {"seed": 3, "steps": 2, "progress": False}
    conditions = [Condition(0, 1, 2), Condition(1, 0, 2)]
    fp32 = generate_samples(net, diffusion, payload, conditions, **kw)
    bf16 = generate_samples(net, diffusion, payload, conditions, compute_dtype="bfloat16", **kw)
    assert seen == [torch.float32] * 2 + [torch.bfloat16] * 2  # two DDIM steps, one batch each
    assert bf16["images"].dtype == np.float32 and np.isfinite(bf16["images"]).all()
    assert not np.array_equal(bf16["images"], fp32["images"])
    assert np.abs(bf16["images"] - fp32["images"]).max() < 0.25  # bf16 rounding, not other samples

    kw = {"seed": 3, "device": "cpu", "grid": False, "sampler_overrides": {"steps": 1}}
    out = tmp_path / "samples"
    written = generate_to_dir(tiny_model, out, [Condition(0, 1, 1)], compute_dtype="bfloat16", **kw)
    assert read_samples(written[0])["meta"]["compute_dtype"] == "bfloat16"
    with pytest.raises(OutputExistsError, match="compute_dtype"):
        generate_to_dir(tiny_model, out, [Condition(0, 1, 1)], compute_dtype="float32", **kw)


def test_sampling_feeds_a_channels_last_network_channels_last_input(tiny_model):
    import torch

    from slimdiff.model.factory import use_channels_last

    net, diffusion, payload = load_denoiser(tiny_model)
    seen = []
    net.unet.conv_in.conv.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    kw = {"seed": 0, "steps": 2, "progress": False}
    generate_samples(net, diffusion, payload, [Condition(0, 1, 2)], **kw)
    assert seen and not any(seen)
    seen.clear()
    generate_samples(use_channels_last(net), diffusion, payload, [Condition(0, 1, 2)], **kw)
    assert seen and all(seen)


def test_sampling_keeps_freed_memory_in_the_process():
    """glibc's thresholds are raised once (the DDIM loop reuses the same buffers at every step)."""
    import ctypes
    import sys

    from slimdiff import allocator

    if not sys.platform.startswith("linux"):
        assert allocator.keep_freed_memory() is False
        return
    try:
        has_mallopt = hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        has_mallopt = False
    if not has_mallopt:
        return  # not glibc: nothing to tune
    assert allocator.keep_freed_memory() is True and allocator.keep_freed_memory() is True


HUGE_PAGE_PROBE = """
import slimdiff, torch
tensor = torch.empty(8 << 20, dtype=torch.uint8)  # kept: freed, its mapping would be gone
ptr = tensor.data_ptr()
inside, flags = False, []
for line in open("/proc/self/smaps"):
    head = line.split()[0]
    if "-" in head and not head.endswith(":"):  # a mapping's address range
        lo, hi = (int(x, 16) for x in head.split("-"))
        inside = lo <= ptr < hi
    elif inside and head == "VmFlags:":
        flags = line.split()[1:]
print("hg" in flags)  # madvise(MADV_HUGEPAGE) on the tensor's mapping
"""


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"), reason="a Linux kernel without huge pages"
)
def test_importing_slimdiff_first_puts_large_tensors_in_huge_pages():
    """PyTorch asks for huge pages on a tensor of 2 MB or more only when its switch was on before torch loaded;
    a user's own setting wins."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    runs = {
        setting: subprocess.run(
            [sys.executable, "-c", HUGE_PAGE_PROBE],
            env=env if setting is None else {**env, "THP_MEM_ALLOC_ENABLE": setting},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        for setting in (None, "0")
    }
    assert runs == {None: "True", "0": "False"}
