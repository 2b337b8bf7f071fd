"""Run a command inside the kernel-level sandbox that pdm-agent.service asks systemd for.

Without systemd as PID 1 we cannot start the unit itself, but the options that could break
the Python stack at runtime are plain kernel features systemd merely switches on, and this
script switches them on the same way before exec'ing the command:

* ``NoNewPrivileges=yes``       -> prctl(PR_SET_NO_NEW_PRIVS)
* ``MemoryDenyWriteExecute=yes`` -> prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) (Linux >= 6.3;
  systemd >= 254 uses the same prctl, older ones an equivalent seccomp filter)
* ``SystemCallFilter=`` / ``SystemCallErrorNumber=`` / ``RestrictAddressFamilies=`` /
  ``SystemCallArchitectures=native`` -> one seccomp filter built with libseccomp from the
  groups ``systemd-analyze syscall-filter`` prints, as systemd builds it.

The options are read from the unit file, so the check follows the file. Needs the system
Python with python3-seccomp (``apt-get install python3-seccomp``); run as
``/usr/bin/python3 tests/unit_sandbox.py UNIT -- COMMAND...``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys

PR_SET_NO_NEW_PRIVS, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 38, 65, 1


def unit_options(path: str) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            options.setdefault(key.strip(), []).append(value.strip())
    return options


def syscall_groups() -> dict[str, list[str]]:
    """`systemd-analyze syscall-filter`: every @group and its members (names or @groups)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        if not line.startswith(" "):
            current = word if word.startswith("@") else None
            if current:
                groups[current] = []
        elif current:
            groups[current].append(word)
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def allowed_syscalls(filters: list[str], groups: dict[str, list[str]]) -> set[str]:
    """systemd's semantics: the first non-~ line starts an allow list, ~ lines remove from it."""
    allowed: set[str] = set()
    for value in filters:
        if value.startswith("~"):
            allowed -= expand(value[1:].split(), groups)
        else:
            allowed |= expand(value.split(), groups)
    return allowed


def build_filter(options: dict[str, list[str]]):
    import seccomp  # python3-seccomp, system Python only: imported here so pytest can collect this file

    allowed = allowed_syscalls(options.get("SystemCallFilter", []), syscall_groups())
    err = getattr(errno, (options.get("SystemCallErrorNumber") or ["EPERM"])[-1])
    flt = seccomp.SyscallFilter(defaction=seccomp.ERRNO(err))
    families = [getattr(socket, f) for v in options.get("RestrictAddressFamilies", []) for f in v.split()]
    for name in sorted(allowed):
        try:
            if name == "socket" and families:
                for family in families:
                    flt.add_rule(seccomp.ALLOW, name, seccomp.Arg(0, seccomp.EQ, family))
            else:
                flt.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError):
            pass  # a name this architecture does not have (e.g. arm_fadvise64_64 on x86-64)
    return flt


def main(argv: list[str]) -> None:
    unit, sep, *command = argv
    assert sep == "--" and command, "usage: unit_sandbox.py UNIT -- COMMAND..."
    options = unit_options(unit)
    libc = ctypes.CDLL(None, use_errno=True)
    if options.get("NoNewPrivileges", ["no"])[-1] == "yes" and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        raise SystemExit(f"PR_SET_NO_NEW_PRIVS failed: errno {ctypes.get_errno()}")
    if options.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes" and libc.prctl(
            PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0):
        raise SystemExit(f"PR_SET_MDWE failed (Linux >= 6.3 needed): errno {ctypes.get_errno()}")
    build_filter(options).load()  # SystemCallArchitectures=native: libseccomp's default arch only
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
