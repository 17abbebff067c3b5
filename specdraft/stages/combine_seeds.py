"""Replicates: each seed's benchmark of an experiment, combined into the one table the summary reads."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from specdraft.plumbing.atomic import atomic_path

log = logging.getLogger(__name__)


def combine_seeds(seeds: Sequence[int], csv_paths: Sequence[str], run_paths: Sequence[str], out_csv: str,
                  out_run: str) -> int:
    """Write every seed's rows to `out_csv`, a `seed` column first, and `{"seeds": {"<seed>": run}}` to `out_run`
    (the i-th paths are seeds[i]'s); the number of rows."""
    if not len(seeds) == len(csv_paths) == len(run_paths):
        raise ValueError(f"{len(seeds)} seeds but {len(csv_paths)} benchmark tables and {len(run_paths)} run files")
    fields, rows = None, []
    for seed, path in zip(seeds, csv_paths):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if fields is None:
                fields = reader.fieldnames
            elif reader.fieldnames != fields:
                raise ValueError(f"{path} has other columns than {csv_paths[0]}; rerun its bench (snakemake -R bench)")
            if "seed" in fields:
                raise ValueError(f"{path} already has a seed column")
            rows += [{"seed": int(seed), **row} for row in reader]
    runs = {}
    for seed, path in zip(seeds, run_paths):
        try:
            runs[str(seed)] = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not JSON ({e}); delete it and rerun its bench") from None
    with atomic_path(out_run) as tmp:
        Path(tmp).write_text(json.dumps({"seeds": runs}, indent=1) + "\n")
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["seed", *fields])
        writer.writeheader()
        writer.writerows(rows)
    log.info("%d rows of %d seeds -> %s", len(rows), len(seeds), out_csv)
    return len(rows)
