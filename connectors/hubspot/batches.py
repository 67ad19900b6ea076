"""Batch plumbing shared by reads and writes: chunking, multi-status errors, bad-input isolation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

from .transport import HubSpotApiError

T = TypeVar("T")
R = TypeVar("R")

#: HubSpot's batch endpoints take at most 100 inputs.
BATCH_SIZE = 100


def chunked(items: Sequence[T], size: int = BATCH_SIZE) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass(frozen=True)
class BatchError:
    """One entry of a 207 body's `errors`: which ids, what category, what HubSpot said."""

    category: str
    message: str
    ids: tuple[str, ...]

    @classmethod
    def from_model(cls, error) -> "BatchError":
        context = getattr(error, "context", None) or {}
        ids = context.get("ids") or context.get("id") or ()
        return cls(getattr(error, "category", None) or "", getattr(error, "message", None) or "",
                   tuple(str(i) for i in ids))


def batch_errors(response) -> list[BatchError]:
    """The errors of a batch response (a 200 model has none)."""
    return [BatchError.from_model(e) for e in getattr(response, "errors", None) or ()]


def isolate(items: Sequence[T], send: Callable[[Sequence[T]], R], key: Callable[[T], str] | None = None,
            ) -> tuple[list[R], list[tuple[T, HubSpotApiError]]]:
    """Send `items` as one batch; when HubSpot refuses the whole batch (400), find the culprits.

    HubSpot answers a batch with one invalid input with a 400 for all of them. When the error names
    ids (`context.ids`) and `key` maps items to ids, those items are set aside and the rest
    sent again once; otherwise the batch is split in halves until the refused inputs stand
    alone. A refused batch was not carried out, so resending its other inputs is safe.
    Returns the responses of the batches that went through and each refused item with its error.
    """
    try:
        return [send(items)], []
    except HubSpotApiError as error:
        if error.status != 400:
            raise  # auth, scopes, a missing endpoint: the same for every input
        if len(items) == 1:
            return [], [(items[0], error)]
        named = set(error.ids)
        if key is not None and named:
            bad = [item for item in items if key(item) in named]
            good = [item for item in items if key(item) not in named]
            if bad and good:
                responses, refused = isolate(good, send, key)
                return responses, [(item, error) for item in bad] + refused
            if bad:
                return [], [(item, error) for item in bad]
        middle = len(items) // 2
        left = isolate(items[:middle], send, key)
        right = isolate(items[middle:], send, key)
        return left[0] + right[0], left[1] + right[1]
