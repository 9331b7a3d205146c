"""A throwaway PostgreSQL server on 127.0.0.1 for the tests, from the binaries of the ``pgserver``
wheel (a dev dependency, so ``make test`` installs it; no system package needed).

The wheel's own Python API is not used: it listens on a unix socket only and, as root, creates a
system user and widens folder permissions. Here ``initdb`` and ``postgres`` run directly, as
``nobody`` when the tests run as root (PostgreSQL refuses root), on a free TCP port, and stop
with the test session (or with pytest, through the parent-death signal).

As root, the binaries are first copied beside the data, into a folder ``nobody`` owns under a
temporary directory every user can enter: the checkout (and its ``.venv``) may sit in a folder
other users cannot enter, such as root's home (mode 700).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg


def pginstall() -> Path:
    """The PostgreSQL installation inside the pgserver wheel (bin/, lib/, share/)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the pgserver wheel is not installed (make install)")
    return Path(spec.submodule_search_locations[0]) / "pginstall"


def copy_install(install: Path, into: Path) -> Path:
    """Copy the installation and the wheel's shared libraries (which the binaries find at
    ``$ORIGIN/../../../pgserver.libs``) into ``into``, keeping that layout; return the copy."""
    copy = Path(shutil.copytree(install, into / "pgserver" / "pginstall", symlinks=True))
    libs = install.parent.parent / "pgserver.libs"
    if libs.is_dir():
        shutil.copytree(libs, into / "pgserver.libs", symlinks=True)
    return copy


def _enterable_by_all(folder: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in (folder, *folder.parents))


def _temp_root() -> str:
    """A temporary directory every user can enter ($TMPDIR may sit in a private folder)."""
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        if Path(candidate).is_dir() and _enterable_by_all(Path(candidate)):
            return candidate
    raise RuntimeError("no temporary directory other users can enter for the test PostgreSQL")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # in the child: fast shutdown (SIGINT) if pytest dies
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def temp_postgres(
    db: str = "cds", user: str = "cds", password: str = "cds", install: Path | None = None
) -> Iterator[str]:
    """Yield a SQLAlchemy URL (postgresql+psycopg) of a fresh server and database, run from
    ``install`` (default: the pgserver wheel's)."""
    install = install or pginstall()
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:
        folder = Path(tempfile.mkdtemp(prefix="pgtest-", dir=_temp_root()))
        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        # ``nobody`` must be able to reach the binaries: a copy in its own folder.
        try:
            install = copy_install(install, folder / "install")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    else:
        folder = Path(tempfile.mkdtemp(prefix="pgtest-"))
    binaries = install / "bin"
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "TZ": "UTC"}
    data, port = folder / "data", _free_port()
    process: subprocess.Popen[bytes] | None = None
    log_path = folder / "postgres.log"
    try:
        subprocess.run(
            [binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8",
             "--locale=C", "--no-sync", "--no-instructions"],
            check=True, cwd=folder, env=env, stdout=subprocess.DEVNULL, **as_user,
        )  # fmt: skip
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [binaries / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port), "-k", "",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent, **as_user,  # noqa: PLW1509 - the parent-death signal
            )  # fmt: skip
        admin = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError("postgres exited:\n" + log_path.read_text())
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as connection:
                    connection.execute(f"CREATE ROLE {user} LOGIN CREATEDB PASSWORD '{password}'")
                    connection.execute(f"CREATE DATABASE {db} OWNER {user}")
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        else:
            raise TimeoutError("postgres did not accept connections:\n" + log_path.read_text())
        yield f"postgresql+psycopg://{user}:{password}@127.0.0.1:{port}/{db}"
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)
