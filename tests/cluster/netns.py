"""A network namespace joined to this host by a veth pair, with test-only addresses, for tests.

    host side  <veth host>  10.213.K.1/30   <-- veth -->   10.213.K.2/30  <veth peer>  inside namespace NAME

The namespace has its own loopback and no other route: from inside it only 10.213.K.1 (this host, through the
veth) can be reached. ``remove()`` deletes the namespace and the veth pair; it never raises.
"""
from __future__ import annotations

import os
import subprocess


def ip(*args, namespace=None, check=True) -> subprocess.CompletedProcess:
    command = (["ip", "netns", "exec", namespace] if namespace else []) + ["ip"] + list(args)
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result


class Namespace:
    def __init__(self, tag: str = ""):
        pid = os.getpid()
        self.name = f"deepdist-test-{pid}{tag}"
        self.veth_host, self.veth_peer = f"ddh{pid}{tag}"[:15], f"ddn{pid}{tag}"[:15]
        self.subnet = self.free_subnet(pid)
        self.host_address, self.peer_address = f"{self.subnet}.1", f"{self.subnet}.2"
        self.created = False

    @staticmethod
    def free_subnet(pid: int) -> str:
        """10.213.K (a /30 at .0) that no interface on this host uses yet."""
        used = ip("-o", "-4", "addr", "show").stdout
        for k in range(256):
            subnet = f"10.213.{(pid + k) % 256}"
            if f" {subnet}." not in used:
                return subnet
        raise RuntimeError("no free 10.213.K.0/30 subnet")

    def create(self) -> "Namespace":
        ip("netns", "add", self.name)
        self.created = True
        ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_peer)
        ip("link", "set", self.veth_peer, "netns", self.name)
        ip("addr", "add", f"{self.host_address}/30", "dev", self.veth_host)
        ip("link", "set", self.veth_host, "up")
        ip("addr", "add", f"{self.peer_address}/30", "dev", self.veth_peer, namespace=self.name)
        ip("link", "set", self.veth_peer, "up", namespace=self.name)
        ip("link", "set", "lo", "up", namespace=self.name)
        return self

    def run(self, command, **kwargs) -> subprocess.CompletedProcess:
        """Run ``command`` inside the namespace."""
        return subprocess.run(["ip", "netns", "exec", self.name] + [str(c) for c in command], **kwargs)

    def prefix(self) -> list:
        return ["ip", "netns", "exec", self.name]

    def remove(self) -> None:
        if self.created:
            ip("netns", "del", self.name, check=False)  # takes the peer with it, and so the whole veth pair
        ip("link", "del", self.veth_host, check=False)  # in case the namespace never got the peer


def permitted() -> str | None:
    """None if this process may create network namespaces, else why not."""
    probe = f"deepdist-probe-{os.getpid()}"
    try:
        result = ip("netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"ip netns unavailable: {error}"
    if result.returncode != 0:
        return f"ip netns add not permitted: {result.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None
