"""A memory cgroup below this process's own, for the Lambda rehearsal (``tools/rehearse.py``).

Version 2 (``memory.max``) or version 1 (``memory.limit_in_bytes``), whichever holds the memory
controller here; :meth:`MemoryCgroup.create` says why not when the machine does not let us make one
(no memory controller, a read-only ``/sys/fs/cgroup``, not root).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MemoryCgroup:
    path: Path
    version: int
    limit_bytes: int

    @classmethod
    def create(cls, name: str, limit_bytes: int) -> tuple[MemoryCgroup | None, str]:
        """A new cgroup limited to ``limit_bytes`` (swap included), or None and the reason."""
        found = _own_memory_cgroup()
        if found is None:
            return None, "none (no memory controller of cgroup v1 or v2 mounted here)"
        parent, version = found
        path = parent / name
        try:
            path.mkdir()
        except OSError as error:
            return None, f"none ({parent} does not take a new cgroup: {error.strerror})"
        cgroup = cls(path, version, limit_bytes)
        try:
            if version == 2:
                (path / "memory.max").write_text(str(limit_bytes))
                (path / "memory.swap.max").write_text("0")
            else:
                (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
                if (path / "memory.memsw.limit_in_bytes").exists():
                    (path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
        except OSError as error:
            cgroup.remove()
            return None, f"none ({path} does not take a memory limit: {error.strerror})"
        return cgroup, ""

    def enter_command(self) -> list[str]:
        """A prefix for a command that runs it inside the cgroup: a shell moves itself in, then
        ``exec``s the command (whose children stay in the cgroup)."""
        procs = self.path / "cgroup.procs"
        return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh"]

    def peak_bytes(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the cgroup for its limit."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            lines = (self.path / name).read_text().splitlines()
        except OSError:
            return False
        counts = dict(line.split()[:2] for line in lines if len(line.split()) >= 2)
        return int(counts.get("oom_kill", "0")) > 0

    def describe(self) -> str:
        return f"cgroup v{self.version} {self.path}, limit {self.limit_bytes // (1024 * 1024)} MiB"

    def remove(self) -> None:
        """Remove the cgroup once its last process has gone (the sandbox's init may outlive the
        sandbox by a moment)."""
        for _ in range(50):
            try:
                self.path.rmdir()
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
            else:
                return


def _own_memory_cgroup() -> tuple[Path, int] | None:
    """The folder of this process's own memory cgroup and its version."""
    try:
        memberships = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    own = {}
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    for line in mounts:
        fields = line.split()
        separator = fields.index("-")
        root, mount_point, kind, options = fields[3], fields[4], fields[separator + 1], fields[-1]
        if kind == "cgroup" and "memory" in options.split(",") and "memory" in own:
            return _below(mount_point, root, own["memory"]), 1
        if kind == "cgroup2" and "" in own:
            folder = _below(mount_point, root, own[""])
            try:
                if "memory" in (folder / "cgroup.controllers").read_text().split():
                    return folder, 2
            except OSError:
                continue
    return None


def _below(mount_point: str, root: str, path: str) -> Path:
    relative = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
    return Path(mount_point) / ("" if relative == "." else relative)
