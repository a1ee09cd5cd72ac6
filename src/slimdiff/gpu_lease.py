"""GPUs per job on a multi-GPU workstation: one, or N at once for a DDP training (training.devices).

`snakemake --resources gpu=2` only caps how many GPU-tagged jobs run at once; it never says *which* GPU a job
gets, so without help two trainings both land on device 0. Each GPU job therefore leases a device itself: it
takes a non-blocking exclusive `flock` on one lock file per device index in a node-local directory, retries
with jittered back-off while all are taken, and exports `CUDA_VISIBLE_DEVICES` before torch touches CUDA.
The lock is held by an open file descriptor, so the kernel releases it when the process ends, killed or not.

A job that needs N devices takes all N or none: it tries each lock once without blocking, and if it got fewer
than N it lets go of them before it backs off. No job ever holds a device while it waits for another, so two
N = 2 jobs on 3 GPUs can neither deadlock (each holding one) nor share one. A wide job can wait longer than a
narrow one under heavy contention (nothing reserves devices for it); the jittered back-off keeps that short.

A device can also be shared by k jobs at once (gpu.jobs_per_device, $SLIMDIFF_GPU_JOBS_PER_DEVICE): each device
then has k lock files (slots), and a job takes one slot on each of its devices. Why: a job that runs for
seconds, as the pilot's do, spends most of its time starting up (imports, the CUDA context, loading a model),
so one job per GPU leaves a large device idle. Slots are taken level by level (slot 0 of every device before
any slot 1), so the jobs spread over the devices before they double up on one.

Under SLURM the allocation already sets the visible devices, so leasing steps aside.

`python -m slimdiff.gpu_lease [CONFIG_FILE]` prints how many GPU-tagged jobs may run at once on this machine
(gpu_slots: devices x jobs per device, the config's `gpu` section read as the jobs will read it): `make run`,
`make pilot` and the DVC stage `compute` pass it to `snakemake --resources gpu=N`.
"""

from __future__ import annotations

import fcntl
import getpass
import logging
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEVICES_ENV = "SLIMDIFF_GPU_DEVICES"  # comma-separated device ids; overrides detection (config: gpu.devices)
LOCK_DIR_ENV = "SLIMDIFF_GPU_LOCK_DIR"  # node-local directory of the lock files (config: gpu.lock_dir)
JOBS_PER_DEVICE_ENV = "SLIMDIFF_GPU_JOBS_PER_DEVICE"  # jobs sharing one device at once (config: gpu.jobs_per_device)

_held: list[int] = []  # descriptors of held locks: alive for the life of the process


@dataclass(frozen=True)
class Lease:
    device: str | None  # the leased device ids as the driver numbers them ("0" or "0,2"), None when none
    reason: str  # why: "leased", "slurm", "no-gpu"
    lock_file: Path | None = None  # the first device's lock
    devices: tuple[str, ...] = ()  # every leased id
    slots: tuple[int, ...] = ()  # the slot taken on each leased device (0 .. jobs_per_device - 1)


def default_lock_dir() -> Path:
    """Node-local (not the shared project directory, where a cluster filesystem may not honour flock)."""
    return Path(tempfile.gettempdir()) / f"slimdiff-gpu-locks-{getpass.getuser()}"


def detect_devices() -> list[str]:
    """Device ids to share out: $SLIMDIFF_GPU_DEVICES, else $CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`."""
    for env in (DEVICES_ENV, "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(env)
        if value is not None:
            return [d.strip() for d in value.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def jobs_per_device() -> int:
    """How many GPU jobs may share one device at once: $SLIMDIFF_GPU_JOBS_PER_DEVICE, else 1."""
    value = os.environ.get(JOBS_PER_DEVICE_ENV, "").strip()
    if not value:
        return 1
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 1:
        raise ValueError(
            f"${JOBS_PER_DEVICE_ENV} (config gpu.jobs_per_device) must be a whole number >= 1, not {value!r}"
        )
    return k


def gpu_slots() -> int:
    """GPU-tagged jobs to run at once: the devices to lease times the jobs each may hold, or one per usable CPU
    core when there is no device.

    The devices are detect_devices()'s, so the count follows $SLIMDIFF_GPU_DEVICES and $CUDA_VISIBLE_DEVICES as
    the leases do. Without a GPU the jobs run on the CPU, as many side by side as there are cores.
    """
    devices = detect_devices()
    if devices:
        return len(devices) * jobs_per_device()
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def under_slurm() -> bool:
    return "SLURM_JOB_ID" in os.environ


def lease_gpu(
    count: int = 1,
    devices: list[str] | None = None,
    lock_dir: str | Path | None = None,
    timeout_s: float = 24 * 3600,
    backoff_s: float = 1.0,
    per_device: int | None = None,
) -> Lease:
    """Lease `count` distinct devices at once for the rest of this process and make them the only ones CUDA sees.

    A device is free while fewer than `per_device` jobs hold it (default jobs_per_device(): 1, a device to
    itself). Call before the first CUDA call (safest: before importing torch). Waits while fewer than `count`
    are free, holding none meanwhile; raises TimeoutError after `timeout_s`, ValueError if the machine has
    fewer devices.
    """
    if count < 1:
        raise ValueError(f"a GPU lease is for at least one device, not {count}")
    if under_slurm():
        log.info("SLURM job %s: using its allocation, CUDA_VISIBLE_DEVICES=%s", os.environ["SLURM_JOB_ID"],
                 os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))  # fmt: skip
        return Lease(None, "slurm")
    devices = detect_devices() if devices is None else [str(d) for d in devices]
    if not devices:
        log.info("no GPU to lease: the job runs on the CPU")
        return Lease(None, "no-gpu")
    if count > len(devices):
        raise ValueError(
            f"the job needs {count} GPUs (training.devices) but this machine shares out {len(devices)}: {devices} "
            f"(${DEVICES_ENV}, config gpu.devices or $CUDA_VISIBLE_DEVICES)"
        )
    per_device = jobs_per_device() if per_device is None else per_device
    if per_device < 1:
        raise ValueError(f"jobs per GPU must be at least 1, not {per_device}")
    lock_dir = Path(lock_dir or os.environ.get(LOCK_DIR_ENV) or default_lock_dir())
    lock_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    start, waited = time.monotonic(), False
    while True:
        got = _try_lock(rng.sample(devices, len(devices)), count, per_device, lock_dir)  # random: fewer collisions
        if got:
            got.sort(key=lambda taken: devices.index(taken[0]))
            ids = tuple(d for d, _, _ in got)
            for _, _, fd in got:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')} with {ids}\n".encode())
                _held.append(fd)
            visible = ",".join(ids)
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
            slots = tuple(slot for _, slot, _ in got)
            shared = "" if per_device == 1 else f", slot {','.join(map(str, slots))} of {per_device} per device"
            log.info("leased GPU %s (locks in %s%s); CUDA_VISIBLE_DEVICES=%s", visible, lock_dir, shared, visible)
            return Lease(visible, "leased", _lock_file(lock_dir, ids[0], slots[0]), ids, slots)
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(
                f"no {'' if count == 1 else f'{count} '}free GPU{'' if count == 1 else 's'} among {devices} after "
                f"{timeout_s:.0f} s (locks in {lock_dir}"
                f"{'' if per_device == 1 else f', {per_device} jobs per device'}); "
                "is --resources gpu=N larger than the number of devices times the jobs per device?"
            )
        if not waited:
            log.info("fewer than %d of GPUs %s are free; waiting", count, devices)
            waited = True
        time.sleep(backoff_s * (0.5 + rng.random()))


def _lock_file(lock_dir: Path, device: str, slot: int) -> Path:
    """Slot 0 is gpu<id>.lock, the one lock a device has when it is not shared; slot k is gpu<id>.<k>.lock."""
    return lock_dir / (f"gpu{device}.lock" if slot == 0 else f"gpu{device}.{slot}.lock")


def _try_lock(order: list[str], count: int, per_device: int, lock_dir: Path) -> list[tuple[str, int, int]]:
    """One slot on each of `count` distinct devices, taken without blocking, as (device, slot, fd); none held (an
    empty list) if fewer devices had a free slot. Level by level: slot 0 of every device before any slot 1."""
    got: list[tuple[str, int, int]] = []
    for slot in range(per_device):
        for device in order:
            if any(d == device for d, _, _ in got):
                continue
            fd = os.open(_lock_file(lock_dir, device, slot), os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            got.append((device, slot, fd))
            if len(got) == count:
                return got
    for _, _, fd in got:  # not enough: hold nothing while waiting
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return []


def release_all() -> None:
    """Give back every device this process leased (exit does the same)."""
    while _held:
        fd = _held.pop()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def export_settings(gpu_config: dict) -> None:
    """Hand the config's `gpu` section to the jobs of this machine through their inherited environment.

    The environment, not rule params: which device a job runs on must never make Snakemake rerun it.
    A variable the user already set wins over the config.
    """
    if gpu_config.get("devices") is not None:
        os.environ.setdefault(DEVICES_ENV, ",".join(str(d) for d in gpu_config["devices"]))
    if gpu_config.get("lock_dir"):
        os.environ.setdefault(LOCK_DIR_ENV, str(gpu_config["lock_dir"]))
    if gpu_config.get("jobs_per_device", 1) != 1:
        os.environ.setdefault(JOBS_PER_DEVICE_ENV, str(gpu_config["jobs_per_device"]))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m slimdiff.gpu_lease",
        description="Print how many GPU-tagged jobs may run at once here (for snakemake --resources gpu=N).",
    )
    parser.add_argument(
        "config", nargs="?", help="a config file whose `gpu` section the jobs will read (devices, jobs_per_device)"
    )
    args = parser.parse_args(argv)
    if args.config:
        from slimdiff.config import read_config_file, validate_config

        export_settings(validate_config(read_config_file(args.config), source=args.config)["gpu"])
    print(gpu_slots())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
