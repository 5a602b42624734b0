"""Vendor Apache ECharts into the package at build time, from the npm registry, pinned by
version and by the registry's SHA-512 integrity (``make`` runs this; no CDN at run time).

    python -m tingbao.dashboards.live.vendor      # or: python dashboards/live/vendor.py

ECharts (Apache-2.0) was chosen over uPlot: it is the usual charting library of Chinese
dashboards (its own Chinese locale, the look Chinese safety officers know), and one library
draws the level–time lines, the LEX bars with limit lines and grade bands, and the spectra.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "echarts"
VERSION = "5.6.0"
TARBALL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
INTEGRITY = ("sha512-oTbVTsXfKuEhxftHqL5xprgLoc0k7uScAwtryCgWF6hPYFLRwOUHiFmHGCBKP5NPFNkDVopOie"
             "yUqYGH8Fa3kA==")
MEMBER = "package/dist/echarts.min.js"
TARGET = Path(__file__).resolve().parent / "static" / "vendor" / "echarts.min.js"


def vendor(target: Path = TARGET) -> Path:
    """Download the pinned tarball, check its integrity, write ``echarts.min.js``."""
    if target.exists() and target.with_suffix(".version").exists() and \
            target.with_suffix(".version").read_text().strip() == VERSION:
        return target
    with urllib.request.urlopen(TARBALL, timeout=60) as r:
        data = r.read()
    algo, _, want = INTEGRITY.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != want:
        raise SystemExit(f"{TARBALL}: integrity {algo}-{got} is not the pinned {INTEGRITY}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        js = tar.extractfile(MEMBER).read()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(js)
    target.with_suffix(".version").write_text(VERSION + "\n")
    return target


if __name__ == "__main__":
    print(vendor(), file=sys.stderr)
