"""JSON documents from outside (public signups, the signed Event Webhook, the staff API),
parsed with a bound on their nesting.

Python's parser recurses once per level: 10,000 nested brackets (20 KB, well inside every
body limit) raise RecursionError, and a document a little under the interpreter's limit
parses but breaks whatever walks it next (validation, `json.dumps`, the database driver).
No legitimate body here nests more than a few levels, so anything deeper than MAX_DEPTH is
refused as a whole, with a message that says why.
"""

from __future__ import annotations

import json
from itertools import chain, compress
from typing import Any

MAX_DEPTH = 64
# The container types a JSON parser makes (exact types: subclasses never come out of one).
CONTAINERS = frozenset((dict, list))


class TooDeep(json.JSONDecodeError):
    """The document nests arrays and objects more than MAX_DEPTH levels deep.

    A `JSONDecodeError` (so a `ValueError`): every caller that refuses invalid JSON
    refuses this too; `message` is the sentence to answer with.
    """

    def __init__(self, doc: str | bytes) -> None:
        self.message = f"Nested more than {MAX_DEPTH} levels deep."
        text = doc if isinstance(doc, str) else doc.decode("utf-8", "replace")
        super().__init__(self.message, text, 0)

    def __str__(self) -> str:
        return self.message


def loads(doc: str | bytes, **kwargs: Any) -> Any:
    """`json.loads(doc, **kwargs)`, refusing documents nested more than MAX_DEPTH levels
    (TooDeep)."""
    try:
        value = json.loads(doc, **kwargs)
    except RecursionError:
        raise TooDeep(doc) from None
    if nests_deeper_than(value, MAX_DEPTH):
        raise TooDeep(doc)
    return value


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` has more than `limit` levels of lists and dicts (walked level by
    level, without recursion).

    Only the exact types a JSON parser makes count. Each level is split with C-level
    iterators (`map`, `compress`), not a Python loop over its values: a 5,000-event
    webhook batch has 60,000 values one level down, and a comprehension testing each
    took as long as parsing the batch."""
    level = [value] if type(value) in CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        dicts = [node for node in level if type(node) is dict]
        children = list(chain(chain.from_iterable(map(dict.values, dicts)),
                              chain.from_iterable(node for node in level
                                                  if type(node) is list)))
        level = list(compress(children, map(CONTAINERS.__contains__, map(type, children))))
    return False

