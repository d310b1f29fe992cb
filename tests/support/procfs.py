"""Facts about processes read from ``/proc`` (Linux only, no psutil needed).

Which processes mention a path (a control plane's workdir) in their command line, and which
TCP sockets a process owns.

The control plane must only ever listen on and talk to 127.0.0.1. Checking flags is not
proof; the kernel's socket tables are. A socket belongs to a process when one of its
``/proc/<pid>/fd`` links reads ``socket:[<inode>]`` and ``/proc/net/tcp{,6}`` has a row with
that inode.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

TCP_LISTEN = "0A"


def pids_using(path: Path) -> set[int]:
    """Live processes (not zombies, not us) whose command line mentions ``path``."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(path).encode() in cmdline and state != "Z":
            pids.add(int(entry.name))
    return pids


def wait_gone(pids: set[int], timeout: float = 30) -> set[int]:
    """The pids still alive (and not zombies) after ``timeout``; empty when all exited."""
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {pid for pid in alive if _alive(pid)}
    return alive


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass(frozen=True)
class Socket:
    """One TCP socket: local and remote address, and whether it is listening."""

    local: tuple[str, int]
    remote: tuple[str, int]
    listening: bool


def _address(hex_address: str) -> tuple[str, int]:
    """``0100007F:1F90`` (IPv4) or a 32-digit IPv6 form, as the kernel prints them."""
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    # The kernel prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address), int(port_hex, 16)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in fd_dir.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:  # closed between listing and reading
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match.group(1))
    return inodes


def tcp_sockets(pid: int) -> list[Socket]:
    """All IPv4 and IPv6 TCP sockets process ``pid`` has open."""
    inodes = _socket_inodes(pid)
    found = []
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if inode in inodes:
                found.append(Socket(_address(local), _address(remote), state == TCP_LISTEN))
    return found
