"""The configuration reference page, generated from config/schema.yaml so it cannot drift from what is validated.

    python -m slimdiff.config_reference            # rewrite docs/reference/configuration.md
    python -m slimdiff.config_reference --check    # exit 1 when the page is stale or a key has no description

The schema is the one definition of every key (type, default, description, the rules it reruns); this page is a
view of it for people, one table per top-level section. tests/test_docs.py runs the check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from slimdiff.config import load_schema
from slimdiff.io import write_text

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "reference" / "configuration.md"

HEADER = """# Configuration reference

<!-- Generated from config/schema.yaml by `python -m slimdiff.config_reference` (make docs). Do not edit by hand:
     change the schema's descriptions and regenerate; tests/test_docs.py fails when this is stale. -->

Every key the pipeline reads, as config/schema.yaml validates it. A config file names only what it changes;
`extends:` overlays another file, and `--config key=value` on the Snakemake command line comes last
(`make config CONFIG=...` prints the resolved result). **Reruns** lists the Snakemake rules whose outputs the key
changes: they receive it through `params:`, so editing it reruns exactly them and what depends on them.
*runtime* keys change how a job runs, not what it writes; *changes the job set* keys add or remove jobs
(folds, replicas, runs).
"""


def leaves(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any], dict]]:
    """(key path, leaf schema, inherited x- settings) for every key below `node` that holds a value.

    A list of objects (the experiment grid) is walked through its items, written `key[].sub`.
    """
    out = []

    def walk(sub: dict[str, Any], at: tuple[str, ...], inherited: dict[str, Any]) -> None:
        inherited = {
            "rules": sub.get("x-rules", inherited.get("rules")),
            "structural": sub.get("x-structural", inherited.get("structural", False)),
        }
        items = sub.get("items")
        if sub.get("properties") is None and isinstance(items, dict) and "properties" in items:
            walk(items, (*at[:-1], at[-1] + "[]"), inherited)
            return
        props = sub.get("properties")
        if props is None:
            out.append((at, sub, inherited))
            return
        for key, child in props.items():
            walk(child, (*at, key), inherited)

    walk(node, path, {})
    return out


def type_of(leaf: dict[str, Any]) -> str:
    if "const" in leaf:
        return f"`{json.dumps(leaf['const'])}`"
    if "enum" in leaf:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in leaf["enum"])
    if "oneOf" in leaf or "anyOf" in leaf:
        return " or ".join(type_of(alt) for alt in leaf.get("oneOf", leaf.get("anyOf")))
    kind = leaf.get("type", "any")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array" and isinstance(leaf.get("items"), dict):
        kind = f"list of {type_of(leaf['items'])}"
    bounds = [f"{sym} {leaf[k]}" for k, sym in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"))
              if k in leaf]  # fmt: skip
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def description_of(leaf: dict[str, Any]) -> str:
    text = leaf.get("description") or (leaf.get("items", {}) if isinstance(leaf.get("items"), dict) else {}).get(
        "description", ""
    )
    return " ".join(str(text).split()).replace("|", "\\|")


def reruns_of(inherited: dict[str, Any]) -> str:
    rules = inherited.get("rules")
    text = ", ".join(f"`{r}`" for r in rules) if rules else "*runtime*"
    return text + ("; *changes the job set*" if inherited.get("structural") else "")


def render(schema: dict[str, Any] | None = None) -> str:
    schema = schema or load_schema()
    lines = [HEADER]
    for section, node in schema["properties"].items():
        lines += [f"\n## `{section}`\n"]
        if node.get("description"):
            lines += [" ".join(node["description"].split()) + "\n"]
        lines += ["| Key | Type | Default | Reruns | Description |", "|---|---|---|---|---|"]
        for path, leaf, inherited in leaves(node, (section,)):
            default = f"`{json.dumps(leaf['default'])}`" if "default" in leaf else "—"
            row = [f"`{'.'.join(path)}`", type_of(leaf), default, reruns_of(inherited), description_of(leaf)]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def undescribed(schema: dict[str, Any] | None = None) -> list[str]:
    """Leaf keys a reader would find no explanation for."""
    schema = schema or load_schema()
    return [".".join(path) for path, leaf, _ in leaves(schema) if path and not description_of(leaf)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed page instead of writing it")
    parser.add_argument("--page", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    page = render()
    missing = undescribed()
    if args.check:
        problems = [f"config/schema.yaml: {key} has no description" for key in missing]
        if not args.page.exists() or args.page.read_text() != page:
            problems.append(f"{args.page} is stale: regenerate it with `make docs`")
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    args.page.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.page, page)
    print(f"wrote {args.page} ({len(page.splitlines())} lines; {len(missing)} keys without a description)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
