"""Bridge networking for apid: Docker's `bridge` driver, IPAM, port publishing, networks.

Modules, each owning one concern:

* `ipam.py` — subnets and addresses (pure): parse/validate CIDRs, pick a free
  pool, hand out and take back addresses, dockerd's MAC rule.
* `store.py` — networks and per-container endpoints on disk
  (`<data-root>/network/state.json`), so a restarted apid finds them again.
* `links.py` — the kernel side with pyroute2 `AsyncIPRoute`: bridges, veth
  pairs, addresses and routes inside a container's namespace.
* `firewall.py` — this daemon's own iptables chains (MASQUERADE, isolation).
* `proxy.py` — the userland proxy of `-p` (asyncio TCP and UDP).
* `controller.py` — `NetworkController`, what daemon.py and the routes call.
"""

from dockyard.apid.network.controller import NetworkController

__all__ = ["NetworkController"]
