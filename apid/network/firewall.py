"""This daemon's iptables rules: MASQUERADE for outbound traffic and network isolation.

Owns two chains named after the daemon instance (`tag`), so parallel daemons
never touch each other's rules, and never the host's own rules:

    nat    POSTROUTING -j DOCKYARD-NAT-<tag>
           DOCKYARD-NAT-<tag>: -s <subnet> ! -o <bridge> -j MASQUERADE   (each non-internal net)
    filter FORWARD -j DOCKYARD-FWD-<tag>
           DOCKYARD-FWD-<tag>: -i <brA> -o <brB> -j DROP                 (each pair of nets)
                               -i <br> ! -o <br> -j DROP, ! -i <br> -o <br> -j DROP (internal)
                               -i <br> -j ACCEPT, -o <br> ctstate RELATED,ESTABLISHED -j ACCEPT

(libnetwork's POSTROUTING MASQUERADE and DOCKER-ISOLATION-STAGE-1/2, minus
the DNAT rules: published ports go through the userland proxy.) The chains'
contents are replaced in one `iptables-restore --noflush`; jumps are added at
start-up and removed with the chains at shutdown. iptables runs only then and
when a network is created or removed, never per container. Without iptables
the daemon logs it and goes on (no outbound NAT, no isolation).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass

__all__ = ["Firewall", "NetRule"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetRule:
    subnet: str
    bridge: str
    internal: bool


class Firewall:
    def __init__(self, tag: str) -> None:
        self.nat_chain = f"DOCKYARD-NAT-{tag}"
        self.fwd_chain = f"DOCKYARD-FWD-{tag}"
        self.iptables = shutil.which("iptables")
        self.restore_bin = shutil.which("iptables-restore")
        self.enabled = bool(self.iptables and self.restore_bin)
        self._lock = asyncio.Lock()
        self._installed = False

    async def _run(self, *args: str, stdin: bytes | None = None,
                   binary: str | None = None) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            binary or self.iptables or "iptables", *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate(stdin)
        return proc.returncode or 0, err.decode(errors="replace").strip()

    def _ruleset(self, nets: list[NetRule]) -> str:
        nat = [f"-A {self.nat_chain} -s {n.subnet} ! -o {n.bridge} -j MASQUERADE"
               for n in nets if not n.internal]
        fwd = []
        for n in nets:
            if n.internal:
                fwd.append(f"-A {self.fwd_chain} -i {n.bridge} ! -o {n.bridge} -j DROP")
                fwd.append(f"-A {self.fwd_chain} ! -i {n.bridge} -o {n.bridge} -j DROP")
        for a in nets:
            for b in nets:
                if a.bridge != b.bridge:
                    fwd.append(f"-A {self.fwd_chain} -i {a.bridge} -o {b.bridge} -j DROP")
        for n in nets:
            # what is not dropped above is accepted, so a host whose FORWARD policy is
            # DROP (a dockerd ran here once) still passes the containers' traffic
            fwd.append(f"-A {self.fwd_chain} -i {n.bridge} -j ACCEPT")
            fwd.append(f"-A {self.fwd_chain} -o {n.bridge} -m conntrack --ctstate "
                       "RELATED,ESTABLISHED -j ACCEPT")
        return "\n".join(["*nat", f":{self.nat_chain} - [0:0]", *nat, "COMMIT",
                          "*filter", f":{self.fwd_chain} - [0:0]", *fwd, "COMMIT", ""])

    async def apply(self, nets: list[NetRule]) -> None:
        """Install the jumps (once) and replace both chains' rules."""
        if not self.enabled:
            return
        async with self._lock:
            code, err = await self._run("-w", "--noflush", stdin=self._ruleset(nets).encode(),
                                        binary=self.restore_bin)
            if code != 0:
                log.warning("iptables-restore failed (no NAT/isolation rules): %s", err)
                return
            if not self._installed:
                for table, hook, chain in (("nat", "POSTROUTING", self.nat_chain),
                                           ("filter", "FORWARD", self.fwd_chain)):
                    code, _ = await self._run("-w", "-t", table, "-C", hook, "-j", chain)
                    if code != 0:
                        code, err = await self._run("-w", "-t", table, "-I", hook, "-j", chain)
                        if code != 0:
                            log.warning("iptables -t %s -I %s -j %s: %s", table, hook, chain,
                                        err)
                self._installed = True

    async def teardown(self) -> None:
        """Remove the jumps and both chains."""
        if not self.enabled:
            return
        async with self._lock:
            for table, hook, chain in (("nat", "POSTROUTING", self.nat_chain),
                                       ("filter", "FORWARD", self.fwd_chain)):
                while (await self._run("-w", "-t", table, "-D", hook, "-j", chain))[0] == 0:
                    pass
                await self._run("-w", "-t", table, "-F", chain)
                await self._run("-w", "-t", table, "-X", chain)
            self._installed = False

    def warn_if_missing(self) -> None:
        if not self.enabled:
            log.warning("iptables not found: containers get no outbound NAT and networks are "
                        "not isolated from each other (install iptables)")
