"""Wall time of the README's demo, from a clean copy of the project, optionally next to one busy process.

    python benchmarks/demo_time.py                       # quiet machine
    python benchmarks/demo_time.py --busy                # with one competing process spinning on a core
    python benchmarks/demo_time.py --out docs/perf/demo_time_<date>.json

Copies the project's files (`git ls-files`: tracked and untracked-not-ignored, so no results/, logs/ or
.snakemake/) to a fresh temporary directory and runs the README's demo command there with this Python's
Snakemake, exactly as a new user would. Writes one JSON: the command, the wall time, every job's wall time
(from Snakemake's own log), and the machine and its load before and after, so a reader can judge the figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_ARGS = ["--cores", "2", "--configfile", "demo/config.yaml"]  # the README's demo line
BUSY_LOOP = "while True: pass"


def copy_project(destination: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def job_times(console: str) -> list[dict]:
    """Each job's rule, wildcards and seconds, from Snakemake's console log ([timestamp] lines)."""
    started, jobs, stamp, rule = {}, [], None, None
    for line in console.splitlines():
        if m := re.match(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$", line):
            stamp = datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := re.match(r"^(?:local)?rule (\w+):$", line):
            rule = m.group(1)
        elif (m := re.match(r"^\s+jobid: (\d+)$", line)) and rule is not None:
            started[m.group(1)] = {"rule": rule, "start": stamp, "wildcards": ""}
            rule = None
        elif (m := re.match(r"^\s+wildcards: (.*)$", line)) and started:
            list(started.values())[-1]["wildcards"] = m.group(1)
        elif (m := re.match(r"^Finished jobid: (\d+)", line)) and m.group(1) in started:
            job = started.pop(m.group(1))
            jobs.append({"rule": job["rule"], "wildcards": job["wildcards"],
                         "seconds": (stamp - job["start"]).total_seconds()})
    return jobs


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        model = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        info["cpu"] = model[0].split(":", 1)[1].strip() if model else None
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    except OSError:
        pass
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", action="store_true", help="run one busy-looping process during the demo")
    parser.add_argument("--out", default=None, help="JSON to write (default: print it)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (its results/ and logs/)")
    args = parser.parse_args()

    run_dir = Path(tempfile.mkdtemp(prefix="specdraft-demo-"))
    copy_project(run_dir)
    command = [sys.executable, "-m", "snakemake", *DEMO_ARGS]
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if args.busy else None
    load_before = os.getloadavg()
    start = time.perf_counter()
    try:
        # The copy's own package, not whichever checkout this Python's `pip install -e .` points at.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(run_dir), os.environ.get("PYTHONPATH")]))}
        result = subprocess.run(command, cwd=run_dir, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    console = result.stdout + result.stderr
    (run_dir / "demo_console.log").write_text(console)
    jobs = job_times(console)
    record = {
        "command": "snakemake " + " ".join(DEMO_ARGS),
        "cwd": "a clean copy of the project (git ls-files)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip(),
        "conditions": {"competing_busy_processes": int(args.busy), "load_average_before": load_before,
                       "load_average_after": os.getloadavg(),
                       "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "machine": machine(),
        "returncode": result.returncode,
        "wall_seconds": round(seconds, 1),
        "num_jobs": len(jobs),
        "seconds_by_rule": {rule: round(sum(j["seconds"] for j in jobs if j["rule"] == rule), 1)
                            for rule in dict.fromkeys(j["rule"] for j in jobs)},
        "jobs": jobs,
    }
    text = json.dumps(record, indent=1) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    if args.keep or result.returncode != 0:
        print(f"run directory kept: {run_dir}", file=sys.stderr)
    else:
        shutil.rmtree(run_dir)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
