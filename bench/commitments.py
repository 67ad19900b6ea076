"""Throughput and quality of adapter.commitments.extract over the labeled corpus.

    .venv/bin/python bench/commitments.py [--seconds 3]

Prints one JSON line. Runs on one core (no workers); the first pass, which loads
dateparser's language data, is not timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# The scoring helper lives with the corpus under tests/ so test and bench share it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.corpus.scoring import load_corpus, run_case, score_corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to keep extracting")
    args = parser.parse_args()

    cases = load_corpus()
    score = score_corpus(cases)  # also the warm-up pass

    notes = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < args.seconds:
        for case in cases:
            run_case(case)
        notes += len(cases)

    print(json.dumps({
        "bench": "commitments",
        "notes": len(cases),
        "notes_per_s": round(notes / elapsed, 1),
        "precision": round(score.precision, 3),
        "recall": round(score.recall, 3),
        "due_day_accuracy": round(score.due_day_accuracy, 3),
    }))


if __name__ == "__main__":
    main()
