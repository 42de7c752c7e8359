"""Check an installed wheel of QuantumORM (run by .ci/wheel in a fresh virtualenv, outside
the source tree): python wheel_check.py SOURCE_ROOT DIST_DIR. Exits non-zero, saying what is
wrong, when a file of the package is missing from the wheel or the installed package does
not work."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

root, dist = Path(sys.argv[1]), Path(sys.argv[2])
problems: list[str] = []
spec = importlib.util.find_spec("quantumorm")  # found, not imported: files are checked first
assert spec is not None and spec.origin is not None
package = Path(spec.origin).resolve().parent
if root in package.parents:
    problems.append(f"quantumorm was imported from the source tree ({package})")

# the package's files as git tracks them, as .ci/wheel copies them to build: a module that
# is only in the working tree would be missing from a release built from a commit, so it is
# not expected here either (and .ci/wheel does not build it in)
source = root / "src" / "quantumorm"
tracked = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--",
                          "src/quantumorm"], capture_output=True, text=True, check=True)
wanted = {name.removeprefix("src/quantumorm/") for name in tracked.stdout.split("\0")
          if name and (root / name).is_file()}
if not wanted:
    problems.append("git ls-files lists no file under src/quantumorm")
wheel = next(dist.glob("*.whl"))
with zipfile.ZipFile(wheel) as archive:
    in_wheel = {name.removeprefix("quantumorm/") for name in archive.namelist()
                if name.startswith("quantumorm/")}
for name in sorted(wanted - in_wheel):
    problems.append(f"missing from the wheel: quantumorm/{name}")
installed = {p.relative_to(package).as_posix() for p in package.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
for name in sorted(wanted - installed):
    problems.append(f"missing from the installed package: quantumorm/{name}")
sdist = next(dist.glob("*.tar.gz"))
with tarfile.open(sdist) as archive:
    in_sdist = {name.split("/src/quantumorm/", 1)[1] for name in archive.getnames()
                if "/src/quantumorm/" in name}
for name in sorted(wanted - in_sdist):
    problems.append(f"missing from the sdist: src/quantumorm/{name}")

if problems:  # importing would only fail on the first missing file
    print("wheel check FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)

import quantumorm  # noqa: E402

version = importlib.metadata.version("quantumorm")
if version != quantumorm.__version__:
    problems.append(f"metadata version {version} != quantumorm.__version__ "
                    f"{quantumorm.__version__}")
plugins = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
if plugins.get("quantumorm.testing.plugin") != "quantumorm.testing.plugin":
    problems.append(f"the pytest11 entry point is missing: {plugins}")
if not (package / "py.typed").is_file():
    problems.append("py.typed is not installed")
if not list((package / "backends" / "redis" / "lua").glob("*.lua")):
    problems.append("no Lua script is installed")

bindir = Path(sys.executable).parent
result = subprocess.run([str(bindir / "quantumorm"), "--help"], capture_output=True, text=True)
if result.returncode != 0 or "usage" not in result.stdout.lower():
    problems.append(f"quantumorm --help exited {result.returncode}: {result.stderr[-500:]}")

# the demo, against a redis-server it starts itself (REDIS_URL unset), with the wheel's code
env = {k: v for k, v in os.environ.items()
       if k not in ("REDIS_URL", "QUANTUMORM_URL", "PYTHONPATH")}
result = subprocess.run([sys.executable, str(root / "examples" / "demo.py")], env=env,
                        capture_output=True, text=True, timeout=300,
                        cwd=Path(sys.argv[2]).parent)
if result.returncode != 0 or "Done" not in result.stdout:
    problems.append(f"the demo exited {result.returncode}:\n{result.stdout[-1500:]}\n"
                    f"{result.stderr[-1500:]}")

# the pytest plugin, as a user's suite meets it: loaded by its entry point (and named again
# by a conftest, which must not register it twice), its fixtures on a private redis-server
suite = Path(sys.argv[2]).parent / "user-suite"
suite.mkdir()
(suite / "conftest.py").write_text('pytest_plugins = ["quantumorm.testing.plugin"]\n')
(suite / "test_user.py").write_text('''
import redis

from quantumorm import Document, EmailField, StringField

seen = []  # the namespaces of the tests run so far: none may hold a key any more


class Account(Document):
    email = EmailField(required=True, unique=True)
    name = StringField(indexed=True)


def check_isolated(qorm):
    assert Account.objects.count_sync() == 0
    client = redis.Redis.from_url(qorm.url)
    assert qorm.namespace not in seen
    for namespace in seen:
        assert list(client.scan_iter(match=f"*{namespace}:*")) == [], namespace
    seen.append(qorm.namespace)


def test_one(qorm):
    check_isolated(qorm)
    qorm.make(Account, email="same@example.org", name="x")
    qorm.make_many(Account, 2)
    assert Account.objects.count_sync() == 3


def test_two(qorm):
    check_isolated(qorm)
    # the same unique email as the other test's: no UniqueViolation in a namespace of its own
    qorm.make(Account, email="same@example.org", name="x")
    assert Account.objects.filter(name="x").count_sync() == 1
''')
env = {k: v for k, v in os.environ.items()
       if not k.startswith(("QUANTUMORM_", "QORM_", "PYTEST_")) and k != "PYTHONPATH"}
result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         str(suite)], env={**env, "QUANTUMORM_TESTING_REQUIRE": "1"},
                        capture_output=True, text=True, timeout=300, cwd=suite)
if result.returncode != 0 or "2 passed" not in result.stdout:
    problems.append(f"a user's tests with the plugin: exit {result.returncode}\n"
                    f"{result.stdout[-2000:]}\n{result.stderr[-1000:]}")

if problems:
    print("wheel check FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"wheel check: {wheel.name} holds all {len(wanted)} package files; version {version}; "
      f"plugin entry point, console script, demo and a user's tests with the plugin OK")
