"""Resolving a job's requirements and building the environment, with uv's binary.

Resolution (`uv pip compile`) runs against this server's Python, with pyspark and py4j
excluded (the server's own are used: a job's direct pins on them are checked against them
first), from the configured index only (uv reads no config file, no `UV_*` variable of the
server's, and requirements cannot carry options: chidori.domain.environments).

An environment is a folder `<directory>/<key>/site` that goes on the job's `PYTHONPATH`, in
front of the server's site-packages: an overlay, so pyspark stays the server's. It is built
once per key on every host that shares `<directory>`:
- a lock file `<directory>/.locks/<key>` (flock) lets one builder at a time build a key;
  the others wait for it and then find the environment there;
- the build goes to `<directory>/.tmp/<key>-<random>` (`uv pip install --target`, hard links
  from uv's cache in `<directory>/.uv-cache`, bytecode compiled), is made read-only (no `w`
  bit anywhere; folders 0555, files 0444 or 0555) and is renamed to `<directory>/<key>` in
  one step: a key's folder either is complete or does not exist;
- a hit is one `stat`: no copy, no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import secrets
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from chidori.config.environments import EnvironmentsConfig
from chidori.domain.environments import SERVER_PROVIDED, environment_key, installable_lock

# What uv may take from the server's environment: where to find programs and certificates,
# and how to reach the index (proxies). Nothing else (no UV_* settings, no credentials).
_PASSED = ("PATH", "SSL_CERT_FILE", "SSL_CERT_DIR", "LANG", "TZ")
_PASSED_PROXIES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")
_LOG_LIMIT = 64 * 1024  # of one step's output kept for the job's log


class ResolutionFailed(Exception):
    """The requirements cannot be resolved (or built); `message` is the resolver's."""

    def __init__(self, message: str, log: str) -> None:
        super().__init__(message)
        self.message = message
        self.log = log


@dataclass(frozen=True)
class Resolution:
    lock: str  # `name==version` lines, pyspark and py4j left out
    log: str
    seconds: float


@dataclass(frozen=True)
class BuiltEnvironment:
    key: str
    site: Path  # what goes on PYTHONPATH
    hit: bool  # it was there already (nothing built by this call)
    seconds: float
    size_bytes: int
    log: str


def uv_binary() -> str:
    """uv's binary as the `uv` package installs it beside this Python, else `uv` on PATH.
    Raises FileNotFoundError."""
    try:
        import uv

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise FileNotFoundError("no uv beside this Python nor on PATH") from None
        return found


class EnvironmentBuilder:
    def __init__(
        self,
        config: EnvironmentsConfig,
        environ: Mapping[str, str],
        python: str = sys.executable,
    ) -> None:
        """`environ`: the server's environment, of which uv gets only `_PASSED` and proxies."""
        self.config = config
        self._python = python
        self._uv_path: str | None = None  # found at first use: a server without uv still starts
        self.python_version = platform.python_version()
        self.platform = sysconfig.get_platform()
        self._server_versions = {}
        for name in sorted(SERVER_PROVIDED):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                self._server_versions[name] = importlib.metadata.version(name)
        self._env = {k: environ[k] for k in (*_PASSED, *_PASSED_PROXIES) if k in environ}
        self._env.update(
            {
                "UV_NO_CONFIG": "1",
                "UV_LINK_MODE": "hardlink",
                "UV_CACHE_DIR": str(config.uv_cache_dir),
                "UV_PYTHON_DOWNLOADS": "never",
                "HOME": str(config.directory / ".tmp"),
            }
        )

    @property
    def _uv(self) -> str:
        if self._uv_path is None:
            try:
                self._uv_path = uv_binary()
            except FileNotFoundError as exc:
                message = f"uv is not installed with the server ({exc}): pip install uv"
                raise ResolutionFailed(message, message) from exc
        return self._uv_path

    @property
    def server_versions(self) -> dict[str, str]:
        """The versions of what the server's Python provides (pyspark, py4j)."""
        return dict(self._server_versions)

    def prepare_directory(self) -> None:
        """The directories, with their modes: environments readable by every uid, the rest
        (cache, builds, locks) by the server only."""
        directory = self.config.directory
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)  # noqa: S103 - every job's uid reads environments
        for private in (".tmp", ".locks", ".resolved"):
            (directory / private).mkdir(exist_ok=True)
            os.chmod(directory / private, 0o700)
        (directory / ".packed").mkdir(exist_ok=True)
        os.chmod(directory / ".packed", 0o755)  # noqa: S103 - drivers read their archives
        self.config.uv_cache_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.config.uv_cache_dir, 0o700)

    # ---- resolution --------------------------------------------------------------------------

    def _index_args(self) -> list[str]:
        args = ["--index-url", self.config.index_url]
        for url in self.config.extra_index_urls:
            args += ["--extra-index-url", url]
        return args

    def _check_server_pins(self, requirements: list[str]) -> None:
        for text in requirements:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            version = self._server_versions.get(name)
            if version is not None and not requirement.specifier.contains(
                version, prereleases=True
            ):
                message = (
                    f"{text!r} cannot be met: {name} is the server's own ({name}=={version}); "
                    "a job cannot replace it"
                )
                raise ResolutionFailed(message, message)

    def _resolution_key(self, requirements: list[str]) -> str:
        """What a resolution depends on: the requirements (in any order), this Python and
        platform, the server's own packages and the indexes."""
        parts = [
            self.python_version,
            self.platform,
            json.dumps(self._server_versions, sort_keys=True),
            self.config.index_url,
            *self.config.extra_index_urls,
            "--",
            *sorted(requirements),
        ]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def _reused(self, key: str) -> Resolution | None:
        """The lock of the same requirements resolved here within `resolve_reuse_seconds`."""
        path = self.config.directory / ".resolved" / key
        try:
            age = time.time() - path.stat().st_mtime
            if age > self.config.resolve_reuse_seconds:
                return None
            lock = path.read_text()
        except OSError:
            return None
        return Resolution(lock, f"resolution reused (resolved here {age:.0f} s ago)\n", 0.0)

    def _remember(self, key: str, lock: str) -> None:
        folder = self.config.directory / ".resolved"
        partial = folder / f".{key}-{secrets.token_hex(4)}"
        partial.write_text(lock)
        os.replace(partial, folder / key)

    def resolve(self, requirements: list[str]) -> Resolution:
        """Pin `requirements` (and their dependencies) for this server's Python. Raises
        ResolutionFailed with the resolver's message. The same requirements resolved within
        `resolve_reuse_seconds` reuse that lock (no resolver run)."""
        self._check_server_pins(requirements)
        key = self._resolution_key(requirements)
        if self.config.resolve_reuse_seconds > 0 and (reused := self._reused(key)):
            return reused
        started = time.monotonic()
        work = self._scratch("resolve")
        try:
            (work / "requirements.in").write_text("\n".join(requirements) + "\n")
            (work / "excludes.txt").write_text("\n".join(sorted(SERVER_PROVIDED)) + "\n")
            argv = [
                self._uv, "pip", "compile", str(work / "requirements.in"),
                "--excludes", str(work / "excludes.txt"),
                "--python", self._python, "--no-header", "--no-annotate", "--quiet",
                *self._index_args(),
            ]  # fmt: skip
            result = self._run(argv, work, self.config.resolve_timeout_seconds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log = _clip(result.stderr)
        if result.returncode != 0:
            raise ResolutionFailed(_resolver_message(result.stderr), log)
        if self.config.resolve_reuse_seconds > 0:
            self._remember(key, result.stdout)
        return Resolution(result.stdout, log, time.monotonic() - started)

    # ---- building ----------------------------------------------------------------------------

    def key_of(self, lock: str) -> str:
        return environment_key(lock, self.python_version, self.platform)

    def path_of(self, key: str) -> Path:
        return self.config.directory / key

    def ensure(self, lock: str) -> BuiltEnvironment:
        """The environment of `lock`, built here if no one has built it. Raises
        ResolutionFailed if the build fails."""
        started = time.monotonic()
        key = self.key_of(lock)
        final = self.path_of(key)
        if final.is_dir():
            return BuiltEnvironment(key, final / "site", True, time.monotonic() - started, 0, "")
        with self.locked(key):
            if final.is_dir():  # another builder finished while this one waited
                return BuiltEnvironment(
                    key, final / "site", True, time.monotonic() - started, 0, "built by another"
                )
            log = self._build(key, lock)
        return BuiltEnvironment(
            key, final / "site", False, time.monotonic() - started, _size_of(final), log
        )

    def _build(self, key: str, lock: str) -> str:
        work = self._scratch(key)
        try:
            (work / "lock.txt").write_text(lock)
            installable = work / "install.txt"
            installable.write_text(installable_lock(lock))
            argv = [
                self._uv, "pip", "install", "--target", str(work / "site"),
                "-r", str(installable), "--no-deps", "--compile-bytecode",
                "--python", self._python, *self._index_args(),
            ]  # fmt: skip
            log = "nothing to install: every package is the server's own\n"
            if installable.read_text().strip():
                result = self._run(argv, work, self.config.build_timeout_seconds)
                log = _clip(result.stderr + result.stdout)
                if result.returncode != 0:
                    raise ResolutionFailed(_resolver_message(result.stderr), log)
            (work / "site").mkdir(exist_ok=True)  # an empty lock still makes a folder
            installable.unlink()
            _make_read_only(work)
            os.rename(work, self.path_of(key))
            return log
        except BaseException:
            _remove_tree(work)
            raise

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold `key`'s build lock (across processes and hosts sharing the directory)."""
        fd = os.open(
            self.config.directory / ".locks" / key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def packed(self, key: str) -> Path:
        """`<directory>/.packed/<key>.zip`: the environment's folder as one archive, for
        executors on other hosts (built once under the key's lock, read-only, renamed into
        place). Raises FileNotFoundError when the environment is not here."""
        archive = self.config.directory / ".packed" / f"{key}.zip"
        if archive.is_file():
            return archive
        with self.locked(key):
            if archive.is_file():
                return archive
            source = self.path_of(key)
            if not source.is_dir():
                raise FileNotFoundError(f"environment {key[:12]} is not on this host")
            partial = archive.with_name(f".{key}-{secrets.token_hex(4)}.zip")
            try:
                with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zipped:
                    for folder, _dirs, files in os.walk(source):
                        for name in files:
                            path = os.path.join(folder, name)
                            zipped.write(path, os.path.relpath(path, source))
                os.chmod(partial, 0o444)
                os.rename(partial, archive)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        return archive

    def size_of(self, key: str) -> int:
        return _size_of(self.path_of(key))

    def remove(self, key: str) -> None:
        """Take an environment away: renamed out of place at once (no job can find it half
        removed), then deleted. Call with `locked(key)` held."""
        final = self.path_of(key)
        if not final.is_dir():
            return
        trash = self.config.directory / ".tmp" / f"removed-{key}-{secrets.token_hex(4)}"
        os.rename(final, trash)
        (self.config.directory / ".packed" / f"{key}.zip").unlink(missing_ok=True)
        _remove_tree(trash)

    def present(self) -> set[str]:
        """Keys of the environments in the directory."""
        try:
            return {e.name for e in os.scandir(self.config.directory) if e.name[:1] != "."}
        except FileNotFoundError:
            return set()

    def _scratch(self, label: str) -> Path:
        work = self.config.directory / ".tmp" / f"{label}-{secrets.token_hex(6)}"
        work.mkdir(parents=True)
        return work

    def _run(self, argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv,
                cwd=cwd,
                env=self._env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            message = f"uv did not finish in {timeout:.0f} s"
            raise ResolutionFailed(message, message) from exc
        except OSError as exc:
            message = f"uv could not be run: {exc}"
            raise ResolutionFailed(message, message) from exc


def _clip(text: str) -> str:
    return text if len(text) <= _LOG_LIMIT else "...\n" + text[-_LOG_LIMIT:]


def _resolver_message(stderr: str) -> str:
    """uv's own explanation, without its progress lines, at most 4000 characters."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    text = "\n".join(lines).strip() or "uv failed without a message"
    return text[-4000:]


def _make_read_only(root: Path) -> None:
    for folder, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                executable = mode & 0o111
                os.chmod(path, 0o555 if executable else 0o444)
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o555)  # noqa: S103 - read-only
    os.chmod(root, 0o555)  # noqa: S103 - read-only for everyone


def _remove_tree(root: Path) -> None:
    """Delete a tree whose folders are read-only (the server may not be root)."""
    for folder, dirs, _files in os.walk(root):
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(folder, name), 0o700)
    shutil.rmtree(root, ignore_errors=True)


def _size_of(root: Path) -> int:
    """Bytes under `root`, each inode once (files hard-linked from uv's cache count fully:
    they are what the environment keeps alive)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total
