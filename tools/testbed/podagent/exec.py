"""Container launcher for the testbed pod agent (standard library only).

Runs as ``python -I -S exec.py run SPEC.json`` for a container, or
``python -I -S exec.py exec PID SPEC.json`` for an exec probe inside a
running container. SPEC.json holds ``argv``, ``env``, ``workingDir``,
``hostname``, ``mounts`` ([{source, target, readOnly}]) and ``errorFile``.

``run`` gives the process a private mount namespace (propagation private) and
UTS namespace, bind-mounts each volume at its mountPath, then execs the
command. Mount sources are opened before the first mount and mounted through
``/proc/self/fd/N`` (opened after ``unshare``: a bind source must belong to
the caller's mount namespace), so a mount over a parent directory (an emptyDir at /tmp,
say) cannot hide a later mount's source. Missing mount points are created on
the host file system (empty directories or files): mount namespaces isolate
mounts, not file contents.

``exec`` joins the mount and UTS namespaces of PID and execs the command with
the container's environment and working directory.

Exit codes: 128 when the container could not be started (the reason is written
to ``errorFile``), otherwise the command's own.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
START_ERROR_EXIT = 128

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


class StartError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise StartError(f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    src = source.encode() if source else None
    _check(_libc.mount(src, target.encode(), None, flags, None), f"mount {target}")


def _ensure_mount_point(target: str, is_dir: bool) -> None:
    if os.path.lexists(target):
        return
    path = Path(target)
    if is_dir:
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def _depth(path: str) -> int:
    return len([part for part in path.split("/") if part])


def setup_mounts(mounts: list[dict[str, Any]]) -> None:
    ordered = sorted(mounts, key=lambda m: _depth(m["target"]))
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    # Opened inside the new namespace (a bind source must belong to it) and
    # before the first mount (which could hide a later source's directory).
    fds = [os.open(m["source"], os.O_PATH | os.O_CLOEXEC) for m in ordered]
    for mount, fd in zip(ordered, fds, strict=True):
        _ensure_mount_point(mount["target"], stat.S_ISDIR(os.fstat(fd).st_mode))
        _mount(f"/proc/self/fd/{fd}", mount["target"], MS_BIND | MS_REC)
    for mount in ordered:
        if mount.get("readOnly"):
            _mount(None, mount["target"], MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
    for fd in fds:
        os.close(fd)


def _set_hostname(name: str) -> None:
    if name:
        raw = name.encode()
        _check(_libc.sethostname(raw, len(raw)), "sethostname")


def _join_namespaces(pid: int) -> None:
    for kind, flag in (("mnt", CLONE_NEWNS), ("uts", CLONE_NEWUTS)):
        fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(fd, flag), f"setns {kind}")
        finally:
            os.close(fd)


def _exec(spec: dict[str, Any]) -> None:
    working_dir = spec.get("workingDir") or "/"
    Path(working_dir).mkdir(parents=True, exist_ok=True)
    os.chdir(working_dir)
    argv = [str(a) for a in spec["argv"]]
    if not argv:
        raise StartError("no command specified (no command in the pod and no entrypoint)")
    env = {str(k): str(v) for k, v in spec["env"].items()}
    try:
        os.execvpe(argv[0], argv, env)  # noqa: S606 - exec is the point
    except OSError as error:
        raise StartError(f'exec: "{argv[0]}": {error.strerror}') from error


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else ""
    if mode == "run" and len(argv) == 3:
        spec_file = argv[2]
    elif mode == "exec" and len(argv) == 4:
        spec_file = argv[3]
    else:
        print("usage: exec.py run SPEC | exec.py exec PID SPEC", file=sys.stderr)
        return 2
    spec = json.loads(Path(spec_file).read_text())
    # Opened before any mount, which could hide the file's directory.
    error_fd = -1
    if spec.get("errorFile"):
        error_fd = os.open(spec["errorFile"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
    try:
        if mode == "run":
            setup_mounts(spec.get("mounts") or [])
            _set_hostname(spec.get("hostname") or "")
        else:
            _join_namespaces(int(argv[2]))
        _exec(spec)
    except (StartError, OSError) as error:
        message = f"failed to start container: {error}"
        print(message, file=sys.stderr)
        if error_fd >= 0:
            os.write(error_fd, message.encode())
        return START_ERROR_EXIT
    return 0  # not reached: exec replaced the process


if __name__ == "__main__":
    sys.exit(main(sys.argv))
