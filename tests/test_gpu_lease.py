"""GPU leasing: one device per GPU-tagged job, or N at once (DDP), never shared, released on exit (kill included)."""

import json
import os
import random
import signal
import subprocess
import sys

import pytest

from slimdiff import gpu_lease


def test_devices_come_from_env_then_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.delenv(gpu_lease.DEVICES_ENV, raising=False)
    assert gpu_lease.detect_devices() == ["2", "3"]
    monkeypatch.setenv(gpu_lease.DEVICES_ENV, "5")
    assert gpu_lease.detect_devices() == ["5"]
    monkeypatch.setenv(gpu_lease.DEVICES_ENV, "")
    assert gpu_lease.detect_devices() == []


def test_gpu_slots_one_per_device_else_one_per_cpu(monkeypatch):
    """The count `make run` and the DVC stage pass as --resources gpu=N (python -m slimdiff.gpu_lease)."""
    monkeypatch.setenv(gpu_lease.DEVICES_ENV, "0,1,3")
    assert gpu_lease.gpu_slots() == 3
    monkeypatch.setenv(gpu_lease.DEVICES_ENV, "")  # no GPU: the jobs run on the CPU, one per core
    assert gpu_lease.gpu_slots() == len(os.sched_getaffinity(0))
    env = {**os.environ, gpu_lease.DEVICES_ENV: "4,5"}
    out = subprocess.run([sys.executable, "-m", "slimdiff.gpu_lease"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout == "2\n"


def test_jobs_per_device_multiplies_the_slots_and_is_read_from_the_config(monkeypatch, tmp_path):
    monkeypatch.setenv(gpu_lease.DEVICES_ENV, "0,1")
    monkeypatch.delenv(gpu_lease.JOBS_PER_DEVICE_ENV, raising=False)
    assert gpu_lease.jobs_per_device() == 1
    monkeypatch.setenv(gpu_lease.JOBS_PER_DEVICE_ENV, "3")
    assert gpu_lease.gpu_slots() == 6
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(gpu_lease.JOBS_PER_DEVICE_ENV, bad)
        with pytest.raises(ValueError, match=f"SLIMDIFF_GPU_JOBS_PER_DEVICE .* not '{bad}'"):
            gpu_lease.gpu_slots()
    cfg = tmp_path / "config.yaml"
    cfg.write_text("gpu: {devices: [0, 1, 2], jobs_per_device: 2}\n")
    env = {k: v for k, v in os.environ.items() if k not in (gpu_lease.DEVICES_ENV, gpu_lease.JOBS_PER_DEVICE_ENV)}
    out = subprocess.run(
        [sys.executable, "-m", "slimdiff.gpu_lease", str(cfg)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0 and out.stdout == "6\n", out.stderr
    env[gpu_lease.JOBS_PER_DEVICE_ENV] = "1"  # the user's variable wins over the config, as for the jobs
    out = subprocess.run(
        [sys.executable, "-m", "slimdiff.gpu_lease", str(cfg)], capture_output=True, text=True, env=env
    )
    assert out.stdout == "3\n"


def test_a_shared_device_takes_k_jobs_spread_over_the_devices_first(monkeypatch, tmp_path):
    """2 devices x 2 slots: the first two leases land on different devices (slot 0 of each), the next two on
    slot 1 of each; a fifth waits (here: times out). A 2-device lease takes one slot on each of 2 devices."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    leases = [gpu_lease.lease_gpu(devices=["0", "1"], lock_dir=tmp_path, per_device=2) for _ in range(4)]
    assert {leases[0].device, leases[1].device} == {"0", "1"}
    assert sorted((x.device, x.slots) for x in leases) == [("0", (0,)), ("0", (1,)), ("1", (0,)), ("1", (1,))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu0.1.lock", "gpu0.lock", "gpu1.1.lock", "gpu1.lock"]
    with pytest.raises(TimeoutError, match="2 jobs per device"):
        gpu_lease.lease_gpu(devices=["0", "1"], lock_dir=tmp_path, per_device=2, timeout_s=0.1, backoff_s=0.02)
    gpu_lease.release_all()
    wide = [gpu_lease.lease_gpu(2, devices=["0", "1"], lock_dir=tmp_path, per_device=2) for _ in range(2)]
    assert [(x.devices, x.slots) for x in wide] == [(("0", "1"), (0, 0)), (("0", "1"), (1, 1))]
    with pytest.raises(TimeoutError, match="no free GPU among"):  # every slot of both devices is held
        gpu_lease.lease_gpu(1, devices=["0", "1"], lock_dir=tmp_path, per_device=2, timeout_s=0.1, backoff_s=0.02)


def test_export_settings_keeps_what_the_user_set(monkeypatch):
    monkeypatch.delenv(gpu_lease.DEVICES_ENV, raising=False)
    monkeypatch.setenv(gpu_lease.LOCK_DIR_ENV, "/mine")
    gpu_lease.export_settings({"devices": [0, 1], "lock_dir": "/config"})
    assert os.environ[gpu_lease.DEVICES_ENV] == "0,1"
    assert os.environ[gpu_lease.LOCK_DIR_ENV] == "/mine"


def test_under_slurm_leasing_steps_aside(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    lease = gpu_lease.lease_gpu(devices=["0", "1"], lock_dir=tmp_path)
    assert lease.reason == "slurm" and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert not list(tmp_path.iterdir())


def test_no_devices_means_cpu(monkeypatch, tmp_path):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert gpu_lease.lease_gpu(devices=[], lock_dir=tmp_path).reason == "no-gpu"


_HOLDER = """
import sys, time
from slimdiff.gpu_lease import lease_gpu
lease = lease_gpu(devices=["0"], lock_dir=sys.argv[1], timeout_s=float(sys.argv[2]), backoff_s=0.05)
print(lease.device, flush=True)
time.sleep(float(sys.argv[3]))
"""


def _holder(lock_dir, timeout_s=1.0, hold_s=60.0):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock_dir), str(timeout_s), str(hold_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_killed_job_gives_its_device_back(tmp_path):
    first = _holder(tmp_path)
    assert first.stdout.readline().strip() == "0"
    second = _holder(tmp_path, timeout_s=0.5)
    _, err = second.communicate(timeout=30)
    assert second.returncode != 0 and "no free GPU among ['0']" in err
    first.send_signal(signal.SIGKILL)
    first.wait()
    third = _holder(tmp_path, hold_s=0)
    out, _ = third.communicate(timeout=30)
    assert third.returncode == 0 and out.strip() == "0"


_SNAKEFILE = """
from slimdiff.gpu_lease import export_settings
export_settings(config["gpu"])

rule all:
    input: expand("out/{i}.json", i=range(4))

rule gpu_job:
    output: "out/{i}.json"
    log: "logs/{i}.log"
    resources: gpu=1
    script: "job.py"
"""

_JOB = """
import json, os, time
from slimdiff.rule_log import to_rule_log
to_rule_log(snakemake)
start = time.time()
time.sleep(2.0)
record = dict(device=os.environ.get("CUDA_VISIBLE_DEVICES"), start=start, end=time.time(), pid=os.getpid())
open(snakemake.output[0], "w").write(json.dumps(record))
"""


@pytest.mark.parametrize("devices, per_device", [("0, 1", 1), ("0", 2)], ids=["two-devices", "one-shared-by-2"])
def test_four_gpu_jobs_share_the_devices_as_configured(tmp_path, devices, per_device):
    """`--resources gpu=2` over the configured devices: 4 jobs, 2 at a time. With one job per device each of the
    2 runs on its own device; with gpu.jobs_per_device 2 on one device, 2 run on it side by side (the lease, not
    only Snakemake, lets them: a device to itself would have kept the second waiting)."""
    (tmp_path / "Snakefile").write_text(_SNAKEFILE)
    (tmp_path / "job.py").write_text(_JOB)
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")}
    env.pop(gpu_lease.DEVICES_ENV, None)
    env.pop(gpu_lease.JOBS_PER_DEVICE_ENV, None)
    gpu = f"gpu={{devices: [{devices}], lock_dir: locks, jobs_per_device: {per_device}}}"
    cmd = ["snakemake", "--cores", "4", "--resources", "gpu=2", "--config", gpu]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [json.loads((tmp_path / "out" / f"{i}.json").read_text()) for i in range(4)]
    assert sorted({j["device"] for j in jobs}) == [d.strip() for d in devices.split(",")]
    pairs = [(a, b) for i, a in enumerate(jobs) for b in jobs[i + 1 :]]
    overlapping = [(a, b) for a, b in pairs if a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping, "the two GPU slots were never used at the same time"
    if per_device == 1:
        assert all(a["device"] != b["device"] for a, b in overlapping)
    logs = [(tmp_path / "logs" / f"{i}.log").read_text() for i in range(4)]
    assert all("leased GPU" in text for text in logs)
    assert per_device == 1 or all("of 2 per device" in text for text in logs)


@pytest.fixture(autouse=True)
def _release():
    yield
    gpu_lease.release_all()


# ---- N devices at once (DDP trainings: training.devices = N) ----

_WIDE = """
import json, os, random, sys, time
from slimdiff.gpu_lease import lease_gpu
count, hold = int(sys.argv[2]), float(sys.argv[3])
lease = lease_gpu(count, devices=["0", "1", "2"], lock_dir=sys.argv[1], timeout_s=120, backoff_s=0.02)
start = time.time()
time.sleep(hold)
print(json.dumps(dict(devices=list(lease.devices), visible=os.environ["CUDA_VISIBLE_DEVICES"], count=count,
                      start=start, end=time.time())), flush=True)
"""


def _wide(lock_dir, count, hold_s):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    cmd = [sys.executable, "-c", _WIDE, str(lock_dir), str(count), str(hold_s)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_n_device_leases_under_contention_never_share_and_never_deadlock(tmp_path):
    """12 jobs asking for 1, 2 or 3 of 3 devices at random, started together with random hold times: each gets
    as many distinct devices as it asked for, no two jobs overlapping in time share a device, all finish."""
    rng = random.Random(28)
    asks = [(rng.choice([1, 2, 2, 3]), rng.uniform(0.05, 0.4)) for _ in range(12)]
    procs = [_wide(tmp_path, count, hold) for count, hold in asks]
    records = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)  # a deadlock would hit this, or the lease's own timeout
        assert proc.returncode == 0, err[-2000:]
        records.append(json.loads(out))
    for rec, (count, _) in zip(records, asks, strict=True):
        assert len(set(rec["devices"])) == count == rec["count"]
        assert rec["visible"] == ",".join(rec["devices"])
    for i, a in enumerate(records):
        for b in records[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                assert not set(a["devices"]) & set(b["devices"]), (a, b)


@pytest.mark.slow
def test_two_jobs_of_two_devices_on_three_gpus_take_turns(tmp_path):
    """The deadlock a one-by-one lease would risk (each holding one device, both waiting for a second)."""
    first, second = _wide(tmp_path, 2, 1.0), _wide(tmp_path, 2, 1.0)
    a, b = (json.loads(p.communicate(timeout=120)[0]) for p in (first, second))
    assert a["start"] >= b["end"] - 0.05 or b["start"] >= a["end"] - 0.05, "ran side by side on 3 GPUs"


def test_more_devices_than_the_machine_has_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ValueError, match="needs 3 GPUs"):
        gpu_lease.lease_gpu(3, devices=["0", "1"], lock_dir=tmp_path)
