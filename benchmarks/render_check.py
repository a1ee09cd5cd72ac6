"""Does what a user opens actually show something? Headless Chromium, offline, on the two pages of a finished run.

    python benchmarks/render_check.py plots  [--project .] [--out results/benchmarks/render]
    python benchmarks/render_check.py report [--report results/report.html] [--out results/benchmarks/render]

`plots`: renders `dvc plots show --html-template report/dvc_plots/offline.html` with every remote host unreachable
and checks that each plot's area holds coloured line pixels (a page whose Vega failed to load is white).
`report`: opens the Snakemake report and checks that its first screen holds the paper table (the front page is
report/workflow.rst), by the rendered DOM and by a screenshot that is not blank.

Chromium comes from Debian's packages (`apt-get install chromium`); it is not a test dependency, so this runs on
demand. Screenshots are kept under --out for a person to look at. Exit 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# Every host name resolves to nothing: a page that still renders needs no network.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("render_check: no Chromium on PATH (Debian: apt-get install chromium)")


def _browser(page: Path, *args: str, width: int = 1200, height: int = 1600) -> subprocess.CompletedProcess:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        OFFLINE,
        f"--window-size={width},{height}",
        "--virtual-time-budget=15000",  # lets Vega and the report's scripts finish before the capture
        *args,
        page.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def screenshot(page: Path, png: Path, **size: int) -> np.ndarray:
    """RGB pixels of the page as a browser draws it."""
    png.parent.mkdir(parents=True, exist_ok=True)
    proc = _browser(page, f"--screenshot={png}", **size)
    if not png.exists():
        raise SystemExit(f"render_check: Chromium wrote no screenshot of {page}: {proc.stderr[-500:]}")
    return np.asarray(Image.open(png).convert("RGB"))


def dom(page: Path) -> str:
    """The page's DOM after its scripts ran (the report is a JavaScript app: its HTML source holds no table)."""
    return _browser(page, "--dump-dom").stdout


def coloured_fraction(rgb: np.ndarray) -> float:
    """Share of strongly coloured pixels: plot lines use saturated colours; axes, text and background do not."""
    channels = rgb.astype(np.int16)
    saturation = channels.max(axis=2) - channels.min(axis=2)
    return float((saturation > 60).mean())


def check_plots(project: Path, out: Path) -> list[str]:
    page_dir = out / "dvc_plots"
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["dvc", "plots", "show", "--html-template", "report/dvc_plots/offline.html", "-o", str(page_dir.resolve())],
        cwd=project,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return [f"dvc plots show failed in {project}: {proc.stderr.strip()[-500:]}"]
    rgb = screenshot(page_dir / "index.html", out / "dvc_plots.png", height=2400)
    share = coloured_fraction(rgb)
    print(f"dvc plots: {share:.2%} of the page is coloured line pixels ({out / 'dvc_plots.png'})")
    return [] if share > 1e-3 else [f"dvc plots page looks blank offline ({share:.4%} coloured pixels)"]


def check_report(report: Path, out: Path, marker: str = "Paper table") -> list[str]:
    if not report.exists():
        return [f"{report}: no such report (make run writes it)"]
    problems = []
    html = dom(report)
    if marker not in html:
        problems.append(f"{report}: the rendered front page does not contain '{marker}'")
    rgb = screenshot(report, out / "report_first_screen.png", height=900)
    grey = rgb.astype(np.int16).mean(axis=2)
    inked = float((grey < 200).mean())  # text, table rules and the navigation bar
    print(f"report: first screen {inked:.1%} inked, '{marker}' {'found' if marker in html else 'missing'}")
    if inked < 0.01:
        problems.append(f"{report}: the first screen is blank")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["plots", "report"])
    parser.add_argument("--project", type=Path, default=Path("."), help="a DVC project after make run (plots)")
    parser.add_argument("--report", type=Path, default=Path("results/report.html"))
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/render"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    problems = check_plots(args.project, args.out) if args.what == "plots" else check_report(args.report, args.out)
    for problem in problems:
        print(f"render_check: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
