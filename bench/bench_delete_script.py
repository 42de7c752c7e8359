"""Server time per ``delete.lua`` call: this tree's script against another tree's.

Both texts (as sent: ``commands.script("delete").source``) are loaded on one private
server; the ORM's deletes of loaded documents (``get_many_sync([id])[0].delete_sync()``,
issue 12's delete) are sent by the SHA of one or the other (``reloads.script`` swapped),
taking turns every 10 calls, each round deleting documents of its own made the same way (a
delete consumes them), and ``INFO commandstats`` gives the EVALSHA microseconds of each
turn (the server's time in the script, its commands included). Reports per script the
median over the rounds of its µs per call, and the median and interquartile spread of its
per-round ratio to the baseline. ``--variant FILE`` (repeatable) adds a script text read
from a file, for trying a change before making it.

Usage: bench/bench_delete_script.py --baseline TREE [--variant FILE] [--n 5000]
[--block 200] [--rounds 31]. It starts a private redis-server on a free 127.0.0.1 port (no
persistence; stopped at exit).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable

import redis
from bench_redis import start_server, stop_server  # (this folder)
from bench_script_parts import script_time  # (this folder)
from bench_write_commands import Person, person  # (this folder)

from quantumorm import close_all, create_connection
from quantumorm.backends.redis import reloads
from quantumorm.backends.redis.commands import Script, script


def other_tree(tree: str) -> Script:
    """``delete.lua`` as the tree at ``tree`` sends it."""
    code = ("import sys; from quantumorm.backends.redis.commands import script; "
            "sys.stdout.write(script('delete').source)")
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src"))
    source = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                            capture_output=True, text=True).stdout
    return Script("delete", source, hashlib.sha1(source.encode("utf-8")).hexdigest())


def from_file(path: str) -> Script:
    with open(path, encoding="utf-8") as f:
        source = f.read()
    return Script("delete", source, hashlib.sha1(source.encode("utf-8")).hexdigest())


def labelled(s: Script, name: str) -> Script:
    source = f"{s.source}\n-- {name}\n"
    return Script(s.name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


def swapped(delete: Script) -> Callable[[str], Script]:
    return lambda name: delete if name == "delete" else script(name)


def block(client: redis.Redis, scripts: dict[str, Script], size: int,
          chunk: int = 10) -> dict[str, float]:
    """EVALSHA µs per delete of each script, over ``size`` fresh documents per script, the
    scripts taking turns every ``chunk`` calls (the slow log would time each call, but it
    logs the script's commands too, which slows them)."""
    made = Person.objects.bulk_create_sync([person() for _ in range(size * len(scripts))])
    names = list(scripts)
    usec = dict.fromkeys(names, 0)
    for at in range(0, len(made), chunk):
        turn = at // chunk
        name = names[(turn + turn // len(names)) % len(names)]  # (each goes first in turn)
        reloads.script = swapped(scripts[name])  # type: ignore[assignment]
        calls0, usec0 = script_time(client)
        for doc in made[at:at + chunk]:
            Person.objects.get_many_sync([doc.id])[0].delete_sync()
        calls1, usec1 = script_time(client)
        assert calls1 - calls0 == len(made[at:at + chunk])
        usec[name] += usec1 - usec0
    reloads.script = script  # type: ignore[assignment]
    return {name: total / size for name, total in usec.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True,
                        help="the other tree (its src/ is imported)")
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    scripts = {"baseline": other_tree(args.baseline), "this": script("delete")}
    for path in args.variant:
        scripts[os.path.basename(path)] = from_file(path)
    # (each text ends with its own name, a comment: equal texts get distinct SHAs)
    scripts = {name: labelled(s, name) for name, s in scripts.items()}
    workdir = tempfile.mkdtemp(prefix="qbench-delete-")
    server, url = start_server(workdir)
    try:
        client = redis.Redis.from_url(url)
        for s in scripts.values():
            client.script_load(s.source)
        create_connection("redis", url, make_default=True)
        for _ in range(0, args.n, 1000):
            Person.objects.bulk_create_sync([person() for _ in range(1000)])
        times: dict[str, list[float]] = {name: [] for name in scripts}
        for _ in range(args.rounds):
            for name, usec in block(client, scripts, args.block).items():
                times[name].append(usec)
        base = times["baseline"]
        print(f"{'script':24} {'µs/call':>8} {'÷ baseline':>10} {'spread of ratios':>18}"
              f"  (EVALSHA usec per delete, medians of {args.rounds} rounds of "
              f"{args.block} per script)")
        for name, got in times.items():
            ratios = sorted(g / b for g, b in zip(got, base, strict=True))
            print(f"{name:24} {statistics.median(got):8.1f} {statistics.median(ratios):10.3f}"
                  f" {ratios[len(ratios) // 4]:8.3f}-{ratios[-1 - len(ratios) // 4]:.3f}")
        close_all()
    finally:
        stop_server(server)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
