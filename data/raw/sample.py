"""Rebuild the bundled demo sample from the full GSM8K and MATH releases (run once; output is committed).

    python data/raw/sample.py ../shared/data data/raw

Seeded and deterministic: GSM8K 100 train / 30 test problems; MATH 160 train / 60 test problems, half from
levels 1-2 and half from levels 3-4 (the medium and hard scenarios). Records are copied byte for byte.
"""

import json
import random
import sys
from pathlib import Path


def sample(lines: list[str], k: int, rng: random.Random) -> list[str]:
    return [lines[i] for i in sorted(rng.sample(range(len(lines)), k))]


def main(source: Path, dest: Path) -> None:
    rng = random.Random(20261129)
    for split, k in (("train", 100), ("test", 30)):
        lines = (source / "gsm8k" / f"{split}.jsonl").read_text().splitlines()
        (dest / "gsm8k" / f"{split}.jsonl").write_text("\n".join(sample(lines, k, rng)) + "\n")
    for split, k in (("train", 80), ("test", 30)):
        lines = (source / "math" / f"{split}.jsonl").read_text().splitlines()
        chosen = []
        for levels in ((1, 2), (3, 4)):
            pool = [l for l in lines if json.loads(l)["level_num"] in levels and json.loads(l)["answer"]]
            chosen += sample(pool, k, rng)
        (dest / "math" / f"{split}.jsonl").write_text("\n".join(chosen) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
