"""Build offline.html, the page template for `dvc plots show` that works without a network.

DVC's own page loads Vega, Vega-Lite and Vega-Embed from a CDN, so offline (a cluster node, a plane) it opens
blank. This template inlines their minified builds instead, and has no `{scripts}` placeholder, so DVC adds no
CDN tags:

    dvc plots show --html-template report/dvc_plots/offline.html      (-> dvc_plots/index.html)

Rebuild (only to change versions) from the npm packages, which are BSD-3-Clause licensed (the licence is
copied into the page):

    cd /tmp && npm pack vega@5 vega-lite@5 vega-embed@6
    python report/dvc_plots/make_offline_template.py /tmp/vega-5.*.tgz /tmp/vega-lite-5.*.tgz /tmp/vega-embed-6.*.tgz
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).parent
PACKAGES = ("vega", "vega-lite", "vega-embed")  # in load order: vega-lite and vega-embed need the ones before

LICENSE = """Copyright (c) 2015, University of Washington Interactive Data Lab.
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

3. Neither the name of the copyright holder nor the names of its contributors
  may be used to endorse or promote products derived from this software
  without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE."""

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>SLIM-Diff: DVC plots</title>
<!-- Written by report/dvc_plots/make_offline_template.py; do not edit by hand.
Vega {vega}, Vega-Lite {vega-lite} and Vega-Embed {vega-embed} are inlined below (minified builds of their npm
packages), so this page needs no network. All three are BSD-3-Clause licensed:

{license}
-->
{inline}
<style>
body {{ font-family: sans-serif; }}
table {{ border-spacing: 15px; }}
</style>
</head>
<body>
<h1>SLIM-Diff: DVC plots</h1>
<p>One line per run and fold; with several revisions (<code>dvc plots diff</code>), dashed by revision.</p>
{plot_divs}
</body>
</html>
"""


def read_build(tgz: Path) -> tuple[str, str, str]:
    """(package name, version, minified build) of an `npm pack` tarball."""
    with tarfile.open(tgz) as tar:
        meta = json.load(tar.extractfile("package/package.json"))
        name = meta["name"]
        js = tar.extractfile(f"package/build/{name}.min.js").read().decode("utf-8")
    js = re.sub(r"^//# sourceMappingURL=.*$", "", js, flags=re.M)  # no map to fetch
    if "</script" in js.lower():
        raise ValueError(f"{tgz}: the build contains </script and cannot be inlined")
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):  # DVC fills these by plain replacement
        if placeholder in js:
            raise ValueError(f"{tgz}: the build contains {placeholder}")
    return name, meta["version"], js


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tarballs", nargs=3, type=Path, help="npm pack tarballs of vega, vega-lite and vega-embed")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "offline.html")
    args = ap.parse_args(argv)
    builds = {name: (version, js) for name, version, js in map(read_build, args.tarballs)}
    if set(builds) != set(PACKAGES):
        print(f"need the tarballs of {', '.join(PACKAGES)}; got {', '.join(builds)}", file=sys.stderr)
        return 2
    inline = "\n".join(f"<script>/* {n} {builds[n][0]} */\n{builds[n][1]}\n</script>" for n in PACKAGES)
    page = (
        PAGE.replace("{license}", LICENSE)
        .replace("{vega}", builds["vega"][0])
        .replace("{vega-lite}", builds["vega-lite"][0])
        .replace("{vega-embed}", builds["vega-embed"][0])
        .replace("{{", "{")
        .replace("}}", "}")
    )
    page = page.replace("{inline}", inline)  # last: nothing is replaced inside the scripts
    args.output.write_text(page, encoding="utf-8")
    print(f"{args.output}: {len(page) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
