"""Real Redis Cluster and Sentinel deployments on loopback ports, for the tests.

:class:`Cluster` starts ``masters`` x (1 + ``replicas``) ``redis-server`` processes with
``cluster-enabled yes``, joins them with ``redis-cli --cluster create`` and waits until every
node reports all 16384 slots served. :class:`SentinelGroup` starts a master, replicas and three
Sentinels watching it. Both stop every process they started, by pid; nothing listens beyond
127.0.0.1. Timeouts are short (node timeout 1 s, Sentinel down-after 500 ms) so that the
failover tests finish in seconds.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

NODE_TIMEOUT_MS = 1000


def _die_with_parent() -> None:
    """In the child: get SIGTERM if pytest dies without running its teardown (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, bus: bool = False) -> list[int]:
    """``count`` free loopback ports (and, with ``bus``, each port + 10000 free too: the
    cluster bus)."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20000, 29999) if bus else random.randint(30000, 39999)
        if port in chosen or not _port_free(port) or (bus and not _port_free(port + 10000)):
            continue
        chosen.append(port)
    return chosen


def _executable(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not on PATH (apt-get install redis-server)")
    return found


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Node:
    port: int
    process: subprocess.Popen[bytes]

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2,
                           **options)  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown, no save, connections cut."""
        if self.alive():
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _launch(workdir: Path, port: int, *options: str) -> Node:
    log = (workdir / f"redis-{port}.log").open("ab")
    process = subprocess.Popen(
        [_executable("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir), *options],
        cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    log.close()
    node = Node(port, process)
    # (no retries: one read that waits out its timeout is retried by redis-py, with backoff,
    # for longer than this wait, on a port something else listens on and does not answer)
    client = node.client(retry=Retry(NoBackoff(), 0))

    def answering() -> bool:
        # (it could not start: most often, its port was taken since free_ports chose it, by
        # a server another test or process started meanwhile, which may even answer)
        if not node.alive():
            raise NodeExited(port, (workdir / f"redis-{port}.log").read_text(errors="replace"))
        if int(client.info("server")["process_id"]) != process.pid:
            raise NodeExited(port, "another server answers on its port")
        return True

    try:
        wait_until(answering, 10, f"redis-server on port {port}")
    finally:
        client.close()
    return node


class NodeExited(RuntimeError):
    """A redis-server that exited before answering (its log's end in the message)."""

    def __init__(self, port: int, log: str) -> None:
        super().__init__(f"redis-server on port {port} exited: {log[-500:]}")


@dataclass
class Cluster:
    workdir: Path
    masters: int = 3
    replicas: int = 1
    nodes: list[Node] = field(default_factory=list)

    def start(self) -> Cluster:
        for attempt in range(3):  # (new ports when a node could not start on its own)
            try:
                return self._start()
            except NodeExited:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _start(self) -> Cluster:
        ports = free_ports(self.masters * (1 + self.replicas), bus=True)
        self.nodes = []
        try:
            for port in ports:
                self.nodes.append(_launch(
                    self.workdir, port, "--cluster-enabled", "yes",
                    "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    "--cluster-replica-validity-factor", "0",
                    "--appendonly", "yes", "--appendfsync", "always",
                    "--appendfilename", f"appendonly-{port}.aof",
                    "--appenddirname", f"aof-{port}"))
            subprocess.run(
                [_executable("redis-cli"), "--cluster", "create",
                 *(f"127.0.0.1:{port}" for port in ports),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
            self.wait_healthy()
            self.wait_replicated()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_replicated(self, timeout: float = 30) -> None:
        """Until every master has its replicas connected and past their initial sync (a
        write can then be confirmed by WAIT)."""
        def replicated() -> bool:
            for node in self.masters_now():
                client = node.client()
                try:
                    info = client.info("replication")
                finally:
                    client.close()
                states = [info[f"slave{i}"]["state"] for i in range(info["connected_slaves"])]
                if len(states) < self.replicas or any(s != "online" for s in states):
                    return False
            return True
        wait_until(replicated, timeout, "replicas in sync")

    def wait_healthy(self, timeout: float = 30) -> None:
        """Until every live node says the cluster is ok with every slot served, and every
        live node's slot map names only live masters (so a node that died has been
        failed over, not merely not noticed yet)."""
        live = {node.port for node in self.live()}

        def healthy() -> bool:
            for node in self.live():
                client = node.client()
                try:
                    info = client.cluster("info")
                    owners = {int(shard[2][1]) for shard in client.execute_command(
                        "CLUSTER", "SLOTS")}
                finally:
                    client.close()
                if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != 16384:
                    return False
                if not owners <= live:
                    return False
            return True
        wait_until(healthy, timeout, "a healthy cluster")

    def live(self) -> list[Node]:
        return [node for node in self.nodes if node.alive()]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.live())

    def masters_now(self) -> list[Node]:
        """The live nodes that currently serve slots."""
        out = []
        for node in self.live():
            client = node.client()
            try:
                role = client.execute_command("ROLE")[0]
            finally:
                client.close()
            if role == b"master":
                out.append(node)
        return out

    def master_of(self, key: str) -> Node:
        """The live master serving ``key``'s slot."""
        probe = self.live()[0].client()
        try:
            slot = probe.cluster("keyslot", key)
            for shard in probe.cluster("slots"):
                start, end, primary = shard[0], shard[1], shard[2]
                if start <= slot <= end:
                    port = int(primary[1])
                    return next(n for n in self.nodes if n.port == port)
        finally:
            probe.close()
        raise LookupError(key)

    def migrate_slot(self, slot: int, target: Node) -> int:
        """Move one slot to ``target`` the way ``redis-cli --cluster reshard`` does
        (IMPORTING / MIGRATING, MIGRATE the keys in batches, then SETSLOT NODE everywhere),
        while clients keep using it. Returns how many keys moved."""
        probe = self.live()[0].client()
        try:
            owner = next(n for n in self.nodes if n.port == next(
                int(shard[2][1]) for shard in probe.execute_command("CLUSTER", "SLOTS")
                if shard[0] <= slot <= shard[1]))
        finally:
            probe.close()
        source, destination = owner.client(), target.client()
        moved = 0
        try:
            source_id = source.execute_command("CLUSTER", "MYID")
            target_id = destination.execute_command("CLUSTER", "MYID")
            destination.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while True:
                keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 20)
                if not keys:
                    break
                source.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000,
                                       "KEYS", *keys)
                moved += len(keys)
                time.sleep(0.01)  # let clients run into the half-moved slot
            for node in self.masters_now():
                client = node.client()
                try:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
                finally:
                    client.close()
        finally:
            source.close()
            destination.close()
        return moved

    def flush(self) -> None:
        for node in self.masters_now():
            client = node.client()
            try:
                client.flushall()
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class SentinelGroup:
    """A master, ``replicas`` replicas and three Sentinels watching them as ``service``."""

    workdir: Path
    service: str = "qorm-main"
    replicas: int = 1
    nodes: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)

    def start(self) -> SentinelGroup:
        ports = free_ports(1 + self.replicas + 3)
        try:
            master = _launch(self.workdir, ports[0])
            self.nodes.append(master)
            for port in ports[1:1 + self.replicas]:
                self.nodes.append(_launch(self.workdir, port, "--replicaof", "127.0.0.1",
                                          str(master.port)))
            for port in ports[1 + self.replicas:]:
                config = self.workdir / f"sentinel-{port}.conf"
                config.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                    f"sentinel monitor {self.service} 127.0.0.1 {master.port} 2\n"
                    f"sentinel down-after-milliseconds {self.service} 500\n"
                    f"sentinel failover-timeout {self.service} 5000\n"
                    f"sentinel parallel-syncs {self.service} 1\n")
                log = (self.workdir / f"sentinel-{port}.log").open("ab")
                process = subprocess.Popen(
                    [_executable("redis-server"), str(config), "--sentinel"],
                    cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None)
                log.close()
                self.sentinels.append(Node(port, process))
            for sentinel in self.sentinels:
                client = sentinel.client()
                try:
                    def ready(c: redis.Redis = client) -> bool:
                        state = c.sentinel_master(self.service)
                        return bool(state["num-slaves"] >= self.replicas
                                    and state["num-other-sentinels"] >= 2)
                    wait_until(ready, 30, "the Sentinels to see the replicas and each other")
                finally:
                    client.close()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def master(self) -> Node:
        client = self.sentinels[0].client()
        try:
            _, port = client.sentinel_get_master_addr_by_name(self.service)
        finally:
            client.close()
        return next(n for n in self.nodes if n.port == int(port))

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.stop()


def stop_all(groups: Iterable[Cluster | SentinelGroup]) -> None:
    for group in groups:
        group.stop()
