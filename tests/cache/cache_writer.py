"""A writer in another process (run by test_cache_processes.py): increments counters
through the ORM on the given primary and cache, and prints ``<id> <value>`` after each
increment completed (so the reader process learns of a write only once it is complete)."""

from __future__ import annotations

import random
import sys

from cache_models import Counter
from cache_support import open_cache

import quantumorm


def main() -> None:
    primary_url, cache_url, count, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    ids = sys.argv[5].split(",")
    quantumorm.create_connection(backend="sqlite", url=primary_url, name="sqlite",
                                 make_default=True)
    open_cache(cache_url)
    rng = random.Random(seed)
    for _ in range(count):
        id = rng.choice(ids)
        value = Counter.objects.get_sync(id=id).inc_sync("n")
        print(id, value, flush=True)
    quantumorm.close_all()


if __name__ == "__main__":
    main()
