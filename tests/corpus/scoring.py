"""Score ``adapter.commitments.extract`` against the labeled corpus.

Shared by tests/test_commitments.py (floors) and bench/commitments.py (numbers),
so both judge "detected" the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from adapter.commitments import Commitment, extract

CORPUS_PATH = Path(__file__).with_name("commitments.yaml")

#: Words that carry no meaning for matching a title to its label.
_STOPWORDS = frozenset("a an the to of for with and or on in at by it them their our my your this that "
                       "those these some any up".split())
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*")


def load_corpus(path: Path = CORPUS_PATH) -> list[dict]:
    with path.open(encoding="utf-8") as corpus:
        return yaml.safe_load(corpus)


def run_case(case: dict) -> list[Commitment]:
    return extract(
        case["text"],
        datetime.fromisoformat(case["sent_at"]),
        case["tz"],
        direction=case["direction"],
        known_people=case.get("known_people", ()),
    )


def _words(title: str) -> list[str]:
    return _WORD.findall(title.lower())


def action_matches(expected: str, actual: str) -> bool:
    """Same leading verb, and at least half of the expected object words present.

    Titles are free text: "Send the signed copy" and "Send the signed copy back"
    are the same task, "Send the deck" and "Call them" are not.
    """
    expected_words, actual_words = _words(expected), _words(actual)
    if not expected_words or not actual_words or expected_words[0] != actual_words[0]:
        return False
    objects = [w for w in expected_words[1:] if w not in _STOPWORDS]
    if not objects:
        return True
    present = set(actual_words[1:])
    return sum(w in present for w in objects) * 2 >= len(objects)


def due_day(commitment: Commitment, tz: str) -> date | None:
    return commitment.due.astimezone(ZoneInfo(tz)).date() if commitment.due else None


@dataclass
class CorpusScore:
    notes: int = 0
    extracted: int = 0
    expected: int = 0
    detected: int = 0
    dated: int = 0  # detected items whose label states a date
    due_day_correct: int = 0
    actor_correct: int = 0
    band_labeled: int = 0
    band_correct: int = 0
    misses: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    wrong_due: list[str] = field(default_factory=list)
    wrong_actor: list[str] = field(default_factory=list)
    wrong_band: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.detected / self.extracted if self.extracted else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.expected if self.expected else 1.0

    @property
    def due_day_accuracy(self) -> float:
        return self.due_day_correct / self.dated if self.dated else 1.0

    @property
    def actor_accuracy(self) -> float:
        return self.actor_correct / self.detected if self.detected else 1.0

    @property
    def band_accuracy(self) -> float:
        return self.band_correct / self.band_labeled if self.band_labeled else 1.0


def confidence_band(confidence: float) -> str:
    if confidence >= 0.8:
        return "high"
    return "medium" if confidence >= 0.5 else "low"


def score_case(case: dict, found: list[Commitment], score: CorpusScore) -> None:
    """Add one case to ``score``: expected items are matched greedily, in text order."""
    score.notes += 1
    score.extracted += len(found)
    score.expected += len(case["expected"])
    unmatched = list(found)
    for expected in case["expected"]:
        match = next((c for c in unmatched if action_matches(expected["action"], c.action)), None)
        if match is None:
            score.misses.append(f"{case['id']}: {expected['action']!r}")
            continue
        unmatched.remove(match)
        score.detected += 1
        if expected.get("due"):
            score.dated += 1
            if str(due_day(match, case["tz"])) == str(expected["due"]):
                score.due_day_correct += 1
            else:
                score.wrong_due.append(f"{case['id']}: want {expected['due']}, got {match.due}")
        if match.actor == expected["actor"] and match.actor_name == expected.get("actor_name"):
            score.actor_correct += 1
        else:
            score.wrong_actor.append(f"{case['id']}: want {expected['actor']}/{expected.get('actor_name')}, "
                                     f"got {match.actor}/{match.actor_name}")
        if "confidence" in expected:
            score.band_labeled += 1
            if confidence_band(match.confidence) == expected["confidence"]:
                score.band_correct += 1
            else:
                score.wrong_band.append(f"{case['id']}: want {expected['confidence']}, got {match.confidence}")
    score.false_positives.extend(f"{case['id']}: {c.action!r}" for c in unmatched)


def score_corpus(cases: list[dict]) -> CorpusScore:
    score = CorpusScore()
    for case in cases:
        score_case(case, run_case(case), score)
    return score
