"""Screenshots of a Snakemake report as a reader sees it, taken with headless Chromium (Debian's `chromium`).

    python scripts/report_screenshots.py report.html docs/report/

A command-line tool, not a rule script. The report is a single-page app: one HTML file whose views (the
home page, a category's list of results, a result shown beside it) are switched by JavaScript. For each
view this writes a copy of the report with a few lines appended that open that view once the page has
loaded, as a click would, and has Chromium screenshot the copy: `home.png`, then one PNG per HTML table
and image the report holds, named after the result's file (`speedup.png` for `results/plots/speedup.png`,
`summary_table.png` for `results/report/summary.html`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
SHOWN = (".png", ".jpg", ".jpeg", ".svg", ".html")  # what the report displays in the page (others download)

# Opens the category holding `path`, then (once React has applied that) shows the result beside it.
OPEN_RESULT = """
<script>
window.addEventListener("load", function () {
  var path = %s;
  setTimeout(function () {
    var category = Object.keys(categories).find(function (c) {
      return Object.values(categories[c]).some(function (paths) { return paths.indexOf(path) >= 0; });
    });
    app.showCategory(category);
    setTimeout(function () {
      var html = getResultMimeType(path) === "text/html";
      app.setView({content: html ? "html" : "img", contentPath: results[path].data_uri, resultPath: path});
    }, 300);
  }, 300);
});
</script>
"""


def result_paths(report: str) -> list[str]:
    """The results the report displays in the page, in its own order."""
    match = re.search(r"var results = (\{.*?\});\s*$", report, re.MULTILINE)
    if match is None:
        raise ValueError("no `var results = {...};` line: is this a Snakemake (>= 8) HTML report?")
    return [path for path in json.loads(match.group(1)) if path.lower().endswith(SHOWN)]


def screenshot(chromium: str, page: Path, out: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
                        f"--window-size={width},{height}", "--virtual-time-budget=10000", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
    if not out.exists():
        raise RuntimeError(f"chromium wrote no screenshot for {page}")


def take(report_path: Path, out_dir: Path, chromium: str, width: int, height: int) -> list[Path]:
    """Screenshot the home view and every displayed result; return the PNGs written."""
    report = report_path.read_text()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="report-views-") as tmp:
        views = [("home", report)]
        for path in result_paths(report):
            script = OPEN_RESULT % json.dumps(path)
            name = Path(path).stem + ("_table" if path.lower().endswith(".html") else "")
            head, body_end, tail = report.rpartition("</body>")  # the page's own: scripts quote the tag too
            views.append((name, head + script + body_end + tail))
        for name, html in views:
            page = Path(tmp) / f"{name}.html"
            page.write_text(html)
            png = out_dir / f"{name}.png"
            screenshot(chromium, page, png, width, height)
            written.append(png)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", type=Path, help="the report written by `snakemake --report report.html`")
    parser.add_argument("out_dir", type=Path, help="where the PNGs go")
    parser.add_argument("--chromium", default="chromium", help="the browser binary (default: chromium)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    if shutil.which(args.chromium) is None:
        sys.exit(f"{args.chromium} not found; on Debian: apt-get install -y chromium")
    for png in take(args.report, args.out_dir, args.chromium, args.width, args.height):
        print(png)


if __name__ == "__main__":
    main()
