"""A private redis-server under callgrind for the benches that count server instructions
(``bench_instructions.py``, ``bench_tx_instructions.py``, ``bench_derive.py``,
``bench_format3.py``): started on a loopback port, checked
to be the server answering there (a taken port would have the workers flush and load
another's server), stopped at the end; and the instruction count of a dump its workers
trigger by label (``callgrind_control --dump=<label>``)."""

from __future__ import annotations

import glob
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


def free_port() -> int:
    """A loopback port free now (the server started on it is then checked to be the one
    answering there: another process may take it in between)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def callgrind_server(port: int, work: str) -> Iterator[tuple[str, int]]:
    """Its URL and pid (valgrind keeps the pid it was started with); dumps go to ``work``."""
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={work}/out.%p",
         "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--hz", "1", "--dir", work],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(300):
            try:
                info = redis.Redis.from_url(url).info("server")
                break
            except redis.ConnectionError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not start")
        if int(info["process_id"]) != server.pid or server.poll() is not None:
            raise SystemExit(f"port {port} is not this server's")
        yield url, server.pid
    finally:
        server.terminate()
        server.wait()


def dumped_instructions(work: str, label: str) -> int:
    """The instructions counted up to the dump labelled ``label`` (the server writes it a
    moment after the trigger)."""
    for _ in range(50):
        found = [path for path in glob.glob(f"{work}/out.*")
                 if f"Trigger: dump {label}\n" in Path(path).read_text()]
        if found:
            match = re.search(r"^summary: (\d+)", Path(found[0]).read_text(), re.M)
            assert match is not None, f"no summary in the dump {label}"
            return int(match.group(1))
        time.sleep(0.2)
    raise AssertionError(f"no callgrind dump for {label}")
