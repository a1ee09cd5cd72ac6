"""The documentation: a short README, links that lead somewhere, a configuration page that matches the schema.

README.md is the front door (at most 150 lines); everything else lives in docs/ by purpose (docs/README.md lists
the pages). Every relative Markdown link in README.md and docs/**/*.md must point to an existing file, and a link
with a #fragment to a heading of that page (GitHub's anchors). docs/reference/cli.md has a section for every
console command of pyproject.toml, and its usage block is what the command prints for --help.
docs/reference/configuration.md is generated from
config/schema.yaml; `python -m slimdiff.config_reference --check` fails when it is stale or a key has no
description.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 150

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def markdown_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[`*_]|<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        slug = github_anchor(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(page: Path) -> list[str]:
    links = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        links += LINK.findall(INLINE_CODE.sub("", line))
    return [t for t in links if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t)]  # no http:, mailto:, ...


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_relative_link_resolves():
    broken = []
    for page in markdown_pages():
        for target in relative_links(page):
            path, _, fragment = target.partition("#")
            dest = (page.parent / unquote(path)).resolve() if path else page
            where = f"{page.relative_to(REPO)} -> {target}"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif fragment and dest.suffix == ".md" and fragment.lower() not in anchors(dest):
                broken.append(f"{where}: no heading with that anchor")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_docs_index_lists_every_page():
    index = REPO / "docs" / "README.md"
    linked = {(index.parent / t.partition("#")[0]).resolve() for t in relative_links(index)}
    pages = {p.resolve() for p in (REPO / "docs").rglob("*.md")} - {index.resolve()}
    missing = sorted(str(p.relative_to(REPO)) for p in pages - linked)
    assert not missing, f"docs/README.md does not list: {missing}"


def test_cli_reference_covers_every_command():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    documented = set(re.findall(r"^## (slimdiff-[\w-]+)\s*$", (REPO / "docs/reference/cli.md").read_text(), re.M))
    missing = sorted(set(scripts) - documented)
    assert not missing, f"docs/reference/cli.md has no section for: {missing}"


def usage_of(entry_point: str) -> str:
    """The `usage:` paragraph a console command prints for --help (at the terminal width of $COLUMNS)."""
    import contextlib
    import importlib
    import io

    module, _, func = entry_point.partition(":")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        getattr(importlib.import_module(module), func)(["--help"])
    return out.getvalue().split("\n\n")[0].strip()


def test_cli_reference_usage_is_what_each_command_prints(monkeypatch):
    """The usage blocks of cli.md are pasted --help output: an option added to a parser must reach the page."""
    monkeypatch.setenv("COLUMNS", "80")  # the width the page was pasted at
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    page = (REPO / "docs/reference/cli.md").read_text(encoding="utf-8")
    stale = []
    for name, entry in scripts.items():
        block = re.search(rf"^```\n(usage: {re.escape(name)} .*?)\n```$", page, re.S | re.M)
        printed = usage_of(entry)
        if block is None or block.group(1).strip() != printed:
            stale.append(
                f"{name}: cli.md has\n{block.group(1) if block else '(no usage block)'}\n--help prints\n{printed}"
            )
    assert not stale, "docs/reference/cli.md is stale:\n" + "\n\n".join(stale)


def test_configuration_reference_is_current():
    proc = subprocess.run(
        [sys.executable, "-m", "slimdiff.config_reference", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
