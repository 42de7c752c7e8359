"""Server time of two versions of ``query.lua`` on the very same calls, for comparing them.

``bench_queries.py`` compares two trees end to end, on a shared machine whose noise can
exceed the difference. This script takes the calls this tree's planner makes for
``bench_queries.py``'s queries (the exact EVALSHA arguments), loads this tree's
``query.lua`` and another one (``--other``: the ``query.lua`` of another tree) and runs each
call with each script in turn, round after round; per query it prints the smallest mean
script time of a round (``usec`` of ``INFO commandstats``) of each, and whether their
replies are identical.

Usage: bench/bench_query_script.py --url redis://... --other <tree>/src/quantumorm/backends/
redis/lua/query.lua [--n 50000] [--calls 40] [--rounds 5], on the data of an earlier
``bench_queries.py --load --n 50000``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_queries  # (this folder)
import redis

from quantumorm import create_connection
from quantumorm.backends.redis import commands, executor

LUA = Path(commands.__file__).parent / "lua"


def captured_calls(n: int) -> dict[str, tuple[Any, ...]]:
    """The EVALSHA of ``query.lua`` each query sends (the last one, once warm)."""
    seen: list[tuple[Any, ...]] = []
    pack = executor._pack

    def spy(conn: Any, sent: list[tuple[Any, ...]]) -> list[bytes]:
        seen.extend(c for c in sent if c[0] in ("EVALSHA", "EVALSHA_RO"))
        return pack(conn, sent)

    calls = {}
    executor._pack = spy
    try:
        for name, query in bench_queries.queries(n).items():
            if name.startswith("count"):
                continue  # (count.lua)
            query(0)
            seen.clear()
            query(3)
            calls[name] = seen[-1]
    finally:
        executor._pack = pack
    return calls


def source(body_path: Path) -> str:
    """A script as commands.script() makes it: shebang, the prelude, the body."""
    text = body_path.read_text("utf-8")
    first, _, body = text.partition("\n")
    return first + "\n" + (LUA / "_prelude.lua").read_text("utf-8") + body


def script_usec(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(v["usec"]) for k, v in stats.items() if k.startswith(("cmdstat_eval", "cmdstat_fcall")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--other", required=True, type=Path, help="another query.lua")
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--calls", type=int, default=40, help="calls per round and script")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    conn = create_connection(url=args.url, name="default")
    client = redis.Redis.from_url(args.url)
    try:
        calls = captured_calls(args.n)
        scripts = {"this": client.script_load(source(LUA / "query.lua")),
                   "other": client.script_load(source(args.other))}
        print(f"{'query':20} {'this µs':>10} {'other µs':>10}  same replies")
        for name, call in calls.items():
            best: dict[str, float] = {}
            replies: dict[str, Any] = {}
            for _ in range(args.rounds):
                for which, sha in scripts.items():
                    run: Callable[[], Any] = lambda sha=sha, call=call: (
                        client.execute_command(call[0], sha, *call[2:]))
                    replies[which] = run()
                    before = script_usec(client)
                    for _ in range(args.calls):
                        run()
                    mean = (script_usec(client) - before) / args.calls
                    best[which] = min(best.get(which, mean), mean)
            print(f"{name:20} {best['this']:10.1f} {best['other']:10.1f}  "
                  f"{replies['this'] == replies['other']}")
    finally:
        client.close()
        conn.close()


if __name__ == "__main__":
    main()
