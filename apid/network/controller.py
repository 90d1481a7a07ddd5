"""`NetworkController`: Docker's bridge networking as daemon.py and the routes see it.

Owns the networks (the default `bridge` of `--bridge/--bip`, user-defined
ones), each container's endpoints on them, the published ports' proxies, the
/etc/hosts entries of network members and the Docker-shaped JSON of networks
and of a container's NetworkSettings. Lifecycle hooks, called by daemon.py:

| hook | when | does |
| --- | --- | --- |
| `startup()` | daemon start (idempotent) | load the store, bridges up, iptables chains |
| `check_create(hc, nc)` | container create | network mode, endpoints, port specs (400/404) |
| `created(c)` | record stored | remember the endpoints asked for |
| `attach(c, ns)` | start, namespace ready | addresses, veths, routes, hosts, proxies |
| `release(c)` | exit, failed start | proxies stop, veths go, addresses back |
| `resume(c)` | restore of a running one | proxies again, on the same ports |
| `forget(c)` | removal | release + the endpoints asked for |
| `shutdown()` | daemon stop | proxies stop, iptables chains and unused bridges go |

With `bridge=None` (`--bridge none`) there is no `bridge` network: containers
of the default mode keep a namespace with `lo` only, as before. User-defined
networks work either way. Name resolution between members of a user network is
by /etc/hosts (there is no embedded DNS server). Must not build OCI specs or
HTTP responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from dockyard.apid import translate
from dockyard.apid.container import Container, rfc3339
from dockyard.apid.network import ipam, links
from dockyard.apid.network.firewall import Firewall, NetRule
from dockyard.apid.network.proxy import PortConflict, Proxy
from dockyard.apid.network.store import Endpoint, Network, Store

from dockyard import errdefs, ids

__all__ = ["NetworkController", "StartError", "NetworkNotFound"]

log = logging.getLogger(__name__)

_PSEUDO = {"host": "host", "none": "null"}  # networks without a bridge
_SHARED_MODES = ("host", "none")
_MAC_FORMS = (re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}"),
              re.compile(r"[0-9a-fA-F]{2}(-[0-9a-fA-F]{2}){5}"),
              re.compile(r"[0-9a-fA-F]{4}(\.[0-9a-fA-F]{4}){2}"))


def _parse_mac(text: str) -> str | None:
    """Go's net.ParseMAC 6-byte forms, as the docker CLI and dockerd accept them
    (aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff) -> aa:bb:cc:dd:ee:ff; None
    for anything else."""
    if not any(form.fullmatch(text) for form in _MAC_FORMS):
        return None
    digits = re.sub(r"[:.-]", "", text).lower()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


class StartError(errdefs.EngineError):
    """A start that failed in the network driver (dockerd: 500)."""


class NetworkNotFound(StartError, errdefs.NotFound):
    """Start of a container whose network is gone or never was (404, as dockerd: the
    name is only looked up at start, so the CLI does not take it for a missing image)."""


def _pseudo_id(name: str) -> str:
    return hashlib.sha256(f"dockyard-network-{name}".encode()).hexdigest()


def _mode(hc: Mapping[str, Any]) -> str:
    return hc.get("NetworkMode") or "default"


def _port_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp") or not port.isdigit() or not 0 < int(port) < 65536:
        raise errdefs.InvalidArgument(f"invalid port specification: \"{key}\"")
    return int(port), proto


def _host_ports(text: str) -> list[int]:
    """"" / "0" -> [0] (ephemeral); "8080" -> [8080]; "8000-8010" -> each."""
    if not text or text == "0":
        return [0]
    lo, sep, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid port specification: \"{text}\"") from None
    if not (0 < first <= last < 65536):
        raise errdefs.InvalidArgument(f"invalid port specification: \"{text}\"")
    return list(range(first, last + 1))


class NetworkController:
    def __init__(self, data_root: str, exec_root: str, bridge: str | None = None,
                 bip: str | None = None, enabled: bool = True,
                 containers: Mapping[str, Container] | None = None,
                 publish: Callable[[str, str, str, dict[str, str]], None] | None = None
                 ) -> None:
        self.bridge = bridge if bridge not in (None, "", "none") else None
        if self.bridge is not None and not _valid_ifname(self.bridge):
            raise errdefs.InvalidArgument(f"invalid bridge name {self.bridge!r}: at most 15 "
                                          "characters of letters, digits, '_', '.', '-' "
                                          "(not first)")
        self.bip = bip
        self.enabled = enabled  # False in unit tests: no kernel objects at all
        self.exec_root = exec_root
        self.store = Store(os.path.join(data_root, "network"))
        self.links = links.Links()
        self.firewall = Firewall(hashlib.sha256(os.path.abspath(exec_root).encode())
                                 .hexdigest()[:8])
        self.containers: Mapping[str, Container] = containers if containers is not None else {}
        self._publish = publish
        self._proxies: dict[str, list[Proxy]] = {}
        self._deleting: dict[str, asyncio.Task] = {}  # container id -> its veths' removal
        self._started = False
        self._lock = asyncio.Lock()

    # --- daemon start / stop -------------------------------------------------------------

    async def startup(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            self.store.load()
        except (ValueError, OSError) as err:
            log.error("network state unreadable, starting empty: %s", err)
        if not self.enabled:
            return
        default = self.default_network()
        if self.bridge is None:
            if default is not None and not self.attached(default.id):
                self._drop_network(default.id)
        else:
            await self._setup_default(default)
        for net in self.store.networks.values():
            if await self.links.ensure_bridge(net.bridge, net.pool.gateway, net.pool.prefixlen):
                net.owns_bridge = True
        self.store.save()
        if self.store.networks:
            self.firewall.warn_if_missing()
        if self.store.networks:
            await self._apply_firewall()
            await asyncio.to_thread(_enable_forwarding)

    async def _setup_default(self, current: Network | None) -> None:
        assert self.bridge is not None
        if self.bip:
            gw, _, plen = self.bip.partition("/")
            ipam.parse_address(gw, "--bip")
            subnet = str(ipam.parse_subnet(f"{gw}/{plen or 16}"))
        elif current is not None and current.bridge == self.bridge:
            subnet, gw = current.pool.subnet, current.pool.gateway
        else:
            subnet, gw = "", ""
        if current is not None and (current.bridge != self.bridge or subnet != current.pool.subnet
                                    or gw != current.pool.gateway):
            if self.attached(current.id):
                raise errdefs.FailedPrecondition(
                    f"the default bridge changed ({current.bridge} {current.pool.subnet} -> "
                    f"{self.bridge} {subnet}) while containers are attached to it")
            self._drop_network(current.id)
            current = None
        if current is not None:
            return
        bridge_idx = await self.links.index(self.bridge)
        if not subnet and bridge_idx is not None:
            # an existing bridge keeps the address it has (dockerd's -b without --bip)
            for addr, plen in await self.links.addresses(self.bridge):
                subnet, gw = str(ipam.parse_subnet(f"{addr}/{plen}")), addr
                break
        if not subnet:
            used = await self._subnets_in_use(exclude_bridge=self.bridge)
            subnet = str(ipam.pick_subnet(used))
            gw = ""
        elif bridge_idx is None:
            net = ipam.parse_subnet(subnet)
            if any(net.overlaps(u) for u in await self._subnets_in_use()):
                raise errdefs.InvalidArgument(f"--bip {self.bip}: {subnet} overlaps a route "
                                              "of this host")
        pool = ipam.Pool.create(subnet, gw or None)
        net = Network(id=ids.new_id(), name="bridge", bridge=self.bridge, pool=pool,
                      created=time.time(), default=True, owns_bridge=bridge_idx is None,
                      options={
                          "com.docker.network.bridge.default_bridge": "true",
                          "com.docker.network.bridge.enable_icc": "true",
                          "com.docker.network.bridge.enable_ip_masquerade": "true",
                          "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                          "com.docker.network.bridge.name": self.bridge,
                          "com.docker.network.driver.mtu": "1500"})
        self.store.networks[net.id] = net
        log.info("default bridge %s subnet=%s gateway=%s", self.bridge, pool.subnet, pool.gateway)

    async def _subnets_in_use(self, exclude_bridge: str | None = None
                              ) -> list[ipam.IPv4Net]:
        used = [n.pool.network for n in self.store.networks.values()
                if n.bridge != exclude_bridge]
        if self.enabled:
            routes = await self.links.subnets_in_use()
            if exclude_bridge:
                own = {n.pool.network for n in self.store.networks.values()
                       if n.bridge == exclude_bridge}
                routes = [r for r in routes if r not in own]
            used += routes
        return used

    async def _apply_firewall(self) -> None:
        await self.firewall.apply([NetRule(n.pool.subnet, n.bridge, n.internal)
                                   for n in self.store.networks.values()])

    async def shutdown(self) -> None:
        """Proxies stop (running containers keep their veths: live restore); iptables
        chains go, and every bridge no container is attached to."""
        for cid in list(self._proxies):
            await self._stop_proxies(cid)
        for cid in list(self._deleting):
            await self._settle(cid)
        if not self.enabled or not self._started:
            return
        await self.firewall.teardown()
        for net in self.store.networks.values():
            with contextlib.suppress(errdefs.EngineError):
                if net.owns_bridge and not await self.links.has_ports(net.bridge):
                    await self.links.delete(net.bridge)
        self.links.close()

    # --- lookups -------------------------------------------------------------------------

    def default_network(self) -> Network | None:
        for net in self.store.networks.values():
            if net.default:
                return net
        return None

    def find(self, ref: str) -> Network:
        """By name, full id or unique id prefix; 404 "network X not found"."""
        by_name = self.store.by_name(ref)
        if by_name is not None:
            return by_name
        if ref in self.store.networks:
            return self.store.networks[ref]
        matches = [n for n in self.store.networks.values() if ref and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise errdefs.NotFound(f"network {ref} not found")

    def host_gateway(self) -> str | None:
        """What `--add-host NAME:host-gateway` resolves to: the default bridge's address
        (dockerd's default for --host-gateway-ip); None without a default bridge."""
        net = self.default_network()
        return net.pool.gateway if net is not None else None

    def _drop_network(self, network_id: str) -> None:
        """Forget a network and the stopped containers' endpoints on it (their next start
        looks their network up again)."""
        for eps in self.store.endpoints.values():
            eps.pop(network_id, None)
        self.store.networks.pop(network_id, None)

    def attached(self, network_id: str) -> list[str]:
        """Containers with a live endpoint on the network (dockerd's active endpoints)."""
        return [cid for cid, eps in self.store.endpoints.items()
                if network_id in eps and eps[network_id].ip]

    def _mode_network(self, mode: str) -> Network | None:
        """The network a NetworkMode names (None: no bridge endpoint)."""
        if mode in ("default", "bridge"):
            return self.default_network()
        if mode in _SHARED_MODES or mode.startswith("container:"):
            return None
        return self.find(mode)

    # --- create --------------------------------------------------------------------------

    def check_create(self, hc: dict[str, Any], nc: dict[str, Any] | None = None) -> None:
        """Validate NetworkMode, EndpointsConfig and port specs of a create body."""
        mode = _mode(hc)
        try:
            bridged = self._mode_network(mode) if not mode.startswith("container:") else None
        except errdefs.NotFound:
            bridged = None  # looked up at start, as dockerd does
            mode = "user-defined"
        if mode.startswith("container:") and (hc.get("PortBindings") or
                                              hc.get("PublishAllPorts")):
            raise errdefs.InvalidArgument("conflicting options: port publishing and the "
                                          "container type network mode")
        if bridged is None and mode in ("default", "bridge") and (
                any(hc.get("PortBindings") or {}) or hc.get("PublishAllPorts")):
            raise errdefs.InvalidArgument(
                "port publishing (-p/-P) needs bridge networking, which this daemon runs "
                "without (--bridge none); use --network host or a user-defined network")
        for key, binds in (hc.get("PortBindings") or {}).items():
            _port_key(key)
            for b in binds or []:
                _host_ports(str((b or {}).get("HostPort") or ""))
                host_ip = ((b or {}).get("HostIp") or "").strip("[]")
                if host_ip and ":" not in host_ip:
                    ipam.parse_address(host_ip, "host IP")
                elif host_ip:  # an IPv6 host address: the proxy binds it, so it must parse
                    try:
                        ipaddress.IPv6Address(host_ip)
                    except ValueError:
                        raise errdefs.InvalidArgument(f"invalid host IP: {host_ip}") from None
        for key, cfg in ((nc or {}).get("EndpointsConfig") or {}).items():
            name = "bridge" if key == "default" else key
            if name in _SHARED_MODES:
                continue
            _check_aliases(cfg or {})
            try:
                net = self._mode_network(name)
            except errdefs.NotFound:
                continue  # looked up at start
            cfg = cfg or {}
            if cfg.get("MacAddress") and _parse_mac(cfg["MacAddress"]) is None:
                raise errdefs.InvalidArgument(f"invalid MAC address: {cfg['MacAddress']}")
            user_defined = net is not None and not net.default
            want_ip = (cfg.get("IPAMConfig") or {}).get("IPv4Address")
            if want_ip and not user_defined:
                raise errdefs.InvalidArgument("user specified IP address is supported on user "
                                              "defined networks only")
            if cfg.get("Aliases") and not user_defined:
                raise errdefs.InvalidArgument("network-scoped alias is supported only for "
                                              "containers in user defined networks")
            if want_ip and net is not None:
                addr = ipam.parse_address(want_ip, "IPv4 address")
                if addr not in net.pool.network:
                    raise errdefs.InvalidArgument(
                        f"invalid endpoint settings: no configured subnet contains IP address "
                        f"{want_ip}")

    def created(self, c: Container) -> None:
        """Remember the endpoints of a new container (primary network first)."""
        eps = self._endpoints_for(c.host_config, c.networking_config)
        primary = next(iter(eps.values()), None)
        if primary is not None and not primary.mac_request:
            primary.mac_request = c.config.get("MacAddress") or ""  # API < 1.44 puts it here
        if eps:
            self.store.endpoints[c.id] = eps
            self._save(durable=True)

    def _endpoints_for(self, hc: dict[str, Any], nc: dict[str, Any] | None
                       ) -> dict[str, Endpoint]:
        out: dict[str, Endpoint] = {}
        mode = _mode(hc)
        configs = {("bridge" if k == "default" else k): (v or {})
                   for k, v in ((nc or {}).get("EndpointsConfig") or {}).items()}
        if mode in _SHARED_MODES or mode.startswith("container:"):
            return out
        names = [mode if mode not in ("default",) else "bridge"]
        names += [k for k in configs if k not in names and k not in _SHARED_MODES]
        for name in names:
            try:
                net = self._mode_network(name)
            except errdefs.NotFound:
                continue  # attach() reports it at start
            if net is None or net.id in out:
                continue
            cfg = configs.get(name) or configs.get(net.name) or configs.get(net.id) or {}
            out[net.id] = self._endpoint(net, cfg)
        return out

    @staticmethod
    def _endpoint(net: Network, cfg: dict[str, Any]) -> Endpoint:
        return Endpoint(network_id=net.id, endpoint_id=ids.new_id(),
                        aliases=list(cfg.get("Aliases") or []),
                        ipv4_request=(cfg.get("IPAMConfig") or {}).get("IPv4Address") or "",
                        mac_request=cfg.get("MacAddress") or "")

    # --- start / exit --------------------------------------------------------------------

    async def attach(self, c: Container, ns_path: str) -> None:
        """At start: every endpoint of c gets an address and a veth in ns_path (eth0 on
        the primary network, with the default route), then /etc/hosts and the proxies."""
        if not self.enabled:
            return
        self._resolve_at_start(c)
        eps = self.store.endpoints.get(c.id)
        if not eps:
            return
        await self.release(c, save=False)  # anything left by a run apid did not see end
        await self._settle(c.id)  # the last run's veths are gone (eth0 is free again)
        try:
            for n, ep in enumerate(eps.values()):
                await self._plug(c, ep, ns_path, f"eth{n}", primary=n == 0)
            await self._start_proxies(c)
        except BaseException as err:
            await self.release(c)
            if isinstance(err, PortConflict):
                net = self.store.networks[next(iter(eps))]
                raise StartError(f"driver failed programming external connectivity on "
                                 f"endpoint {c.name.lstrip('/')} ({eps[net.id].endpoint_id}):"
                                 f" {err}") from err
            raise
        self._save()
        self._write_hosts(c)
        self._refresh_peers(c)
        for ep in eps.values():
            self._event("connect", self.store.networks[ep.network_id], c)

    def _resolve_at_start(self, c: Container) -> None:
        """The networks the create named are looked up now (dockerd: at start): a missing
        one fails the start with 404; one created after the container joins now."""
        mode = _mode(c.host_config)
        if mode in _SHARED_MODES or mode.startswith("container:"):
            return
        names = ["bridge" if mode == "default" else mode]
        names += [("bridge" if k == "default" else k) for k in
                  ((c.networking_config or {}).get("EndpointsConfig") or {})]
        eps = self.store.endpoints.get(c.id) or {}
        known = {self.store.networks[n].name for n in eps if n in self.store.networks}
        for i, name in enumerate(dict.fromkeys(names)):
            if name in _SHARED_MODES or name in known:
                continue
            try:
                net = self._mode_network(name)
            except errdefs.NotFound:
                raise NetworkNotFound(f"network {name} not found") from None
            if net is None or net.id in eps:
                continue
            cfg = ((c.networking_config or {}).get("EndpointsConfig") or {}).get(name) or {}
            ep = self._endpoint(net, cfg)
            eps = ({net.id: ep, **eps} if i == 0 else {**eps, net.id: ep})
            self.store.endpoints[c.id] = eps

    async def _plug(self, c: Container, ep: Endpoint, ns_path: str, ifname: str,
                    primary: bool) -> None:
        net = self.store.networks[ep.network_id]
        ep.ip = net.pool.allocate(ep.ipv4_request or None)
        ep.mac = (_parse_mac(ep.mac_request) or "") if ep.mac_request else ipam.mac_for(ep.ip)
        if not ep.mac:
            net.pool.release(ep.ip)
            ep.ip = ep.mac = ""
            raise errdefs.InvalidArgument(f"invalid MAC address: {ep.mac_request}")
        ep.host_veth = "veth" + secrets.token_hex(4)[:7]
        ep.ifname = ifname
        try:
            await self.links.attach(net.bridge, ns_path, ep.host_veth, ifname, ep.ip,
                                    net.pool.prefixlen, ep.mac,
                                    net.pool.gateway if primary and not net.internal else None)
        except Exception as err:
            net.pool.release(ep.ip)
            ep.ip = ep.mac = ep.host_veth = ep.ifname = ""
            if isinstance(err, errdefs.EngineError):
                raise
            raise StartError(f"attach {c.name.lstrip('/')} to network {net.name}: {err}") \
                from err

    async def release(self, c: Container, save: bool = True) -> None:
        """After a run (exit, failed start): proxies stop, veths go, addresses back."""
        await self._stop_proxies(c.id)
        eps = self.store.endpoints.get(c.id)
        if not eps:
            return
        changed = False
        self._delete_later(c.id, [ep.host_veth for ep in eps.values() if ep.host_veth])
        for ep in eps.values():
            if ep.ip:
                net = self.store.networks.get(ep.network_id)
                if net is not None:
                    net.pool.release(ep.ip)
                    self._event("disconnect", net, c)
                changed = True
            ep.ip = ep.mac = ep.host_veth = ep.ifname = ""
        self.store.ports.pop(c.id, None)
        if changed and save:
            self._save()
            self._refresh_peers(c)

    def _delete_later(self, cid: str, veths: list[str]) -> None:
        """Delete host veths (their peers go with them) off the exit path: the kernel
        waits for an RCU grace period per device (10-30 ms). The next start of the
        container, connect and shutdown wait for it (`_settle`)."""
        if not veths or not self.enabled:
            return
        before = self._deleting.get(cid)

        async def run() -> None:
            if before is not None:
                with contextlib.suppress(Exception):
                    await before
            for veth in veths:
                try:
                    await self.links.delete(veth)
                except errdefs.EngineError as err:
                    log.warning("deleting veth %s container_id=%s: %s", veth, cid, err)

        task = asyncio.get_running_loop().create_task(run())
        self._deleting[cid] = task
        task.add_done_callback(
            lambda t: self._deleting.pop(cid, None) if self._deleting.get(cid) is t else None)

    async def _settle(self, cid: str) -> None:
        task = self._deleting.get(cid)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def resume(self, c: Container) -> None:
        """A running container found at apid start: its proxies again (same ports)."""
        if self.store.endpoints.get(c.id) and self.enabled:
            try:
                await self._start_proxies(c, self.store.ports.get(c.id))
            except errdefs.EngineError as err:
                log.warning("published ports not restored container_id=%s err=%s", c.id, err)

    async def forget(self, c: Container) -> None:
        """On removal: release, then drop the endpoints."""
        await self.release(c)
        if self.store.endpoints.pop(c.id, None) is not None or self.store.ports.pop(c.id, None):
            self._save(durable=True)

    def _save(self, durable: bool = False) -> None:
        try:
            self.store.save(durable)
        except OSError as err:
            log.error("saving network state: %s", err)

    # --- ports ---------------------------------------------------------------------------

    def _wanted_ports(self, c: Container) -> dict[str, list[dict[str, str]]]:
        hc = c.host_config
        want = {k: list(v or []) for k, v in (hc.get("PortBindings") or {}).items()}
        if hc.get("PublishAllPorts"):
            for key in (c.config.get("ExposedPorts") or {}):
                want.setdefault(key, [{"HostIp": "", "HostPort": ""}])
        return {k: v for k, v in want.items() if v}

    async def _start_proxies(self, c: Container,
                             bound: dict[str, list[dict[str, str]]] | None = None) -> None:
        eps = self.store.endpoints.get(c.id) or {}
        primary = next(iter(eps.values()), None)
        want = bound or self._wanted_ports(c)
        if not want or primary is None or not primary.ip:
            return
        proxies = self._proxies.setdefault(c.id, [])
        result: dict[str, list[dict[str, str]]] = {}
        try:
            for key, binds in want.items():
                cport, proto = _port_key(key)
                if proto == "sctp":
                    raise errdefs.InvalidArgument("sctp ports cannot be published by this "
                                                  "engine")
                out = result.setdefault(key if "/" in key else f"{key}/tcp", [])
                for b in binds:
                    host_ip = (b.get("HostIp") or "").strip("[]")
                    addrs = [host_ip] if host_ip else ["0.0.0.0", "::"]
                    port = await self._bind_one(proxies, proto, addrs, _host_ports(
                        str(b.get("HostPort") or "")), primary.ip, cport)
                    for a in addrs:
                        if any(p.host_ip == a and p.host_port == port for p in proxies):
                            out.append({"HostIp": a, "HostPort": str(port)})
        except BaseException:
            await self._stop_proxies(c.id)
            raise
        self.store.ports[c.id] = result

    @staticmethod
    async def _bind_one(proxies: list[Proxy], proto: str, addrs: list[str],
                        candidates: list[int], ip: str, cport: int) -> int:
        """Bind addrs[0] on the first free candidate port, then the other addresses on
        the same port (`::` skipped when the host has no IPv6)."""
        last: Exception | None = None
        for port in candidates:
            first = Proxy(proto, addrs[0], port, ip, cport)
            try:
                port = await first.start()
            except PortConflict as err:
                last = err
                continue
            proxies.append(first)
            for extra in addrs[1:]:
                p = Proxy(proto, extra, port, ip, cport)
                try:
                    await p.start()
                    proxies.append(p)
                except PortConflict:
                    if extra != "::":
                        raise
            return port
        assert last is not None
        raise last

    async def _stop_proxies(self, cid: str) -> None:
        for p in self._proxies.pop(cid, []):
            await p.stop()

    # --- /etc/hosts ----------------------------------------------------------------------

    def _hosts_text(self, c: Container) -> str:
        eps = [ep for ep in (self.store.endpoints.get(c.id) or {}).values() if ep.ip]
        primary = eps[0] if eps else None
        gateway = None
        if primary is not None:
            gateway = self.store.networks[primary.network_id].pool.gateway
        text = translate.hosts_file(c.config.get("Hostname") or c.id[:12],
                                    primary.ip if primary else None,
                                    c.host_config.get("ExtraHosts") or [], gateway)
        seen: set[str] = set()
        for ep in eps:
            net = self.store.networks[ep.network_id]
            if net.default:
                continue  # the default bridge has no name resolution (dockerd: links only)
            for cid, peer_eps in self.store.endpoints.items():
                peer_ep = peer_eps.get(net.id)
                other = self.containers.get(cid)
                if cid == c.id or other is None or peer_ep is None or not peer_ep.ip:
                    continue
                names = [other.name.lstrip("/"), *peer_ep.aliases, cid[:12]]
                line = f"{peer_ep.ip}\t{' '.join(dict.fromkeys(names))}"
                if line not in seen:
                    seen.add(line)
                    text += line + "\n"
        return text

    def _write_hosts(self, c: Container) -> None:
        if not c.root or not os.path.isdir(c.root):
            return
        try:
            text = self._hosts_text(c)
            # in place: the file is bind-mounted into the container (a rename would not show)
            with open(c.hosts_path, "w") as f:
                f.write(text)
        except (OSError, errdefs.EngineError) as err:
            log.warning("writing hosts container_id=%s err=%s", c.id, err)

    def _refresh_peers(self, c: Container) -> None:
        """Rewrite the hosts files of c's fellow members of user-defined networks (the
        default bridge has no name resolution: nothing to rewrite there)."""
        nets = {nid for nid in self.store.endpoints.get(c.id) or {}
                if nid in self.store.networks and not self.store.networks[nid].default}
        for cid, eps in self.store.endpoints.items():
            other = self.containers.get(cid)
            if cid == c.id or other is None or not (nets & set(eps)):
                continue
            if any(ep.ip for ep in eps.values()):
                self._write_hosts(other)

    # --- connect / disconnect ------------------------------------------------------------

    async def connect(self, ref: str, c: Container, cfg: dict[str, Any] | None,
                      ns_path: str | None) -> None:
        """POST /networks/{id}/connect: a running container gets the interface now."""
        net = self.find(ref)
        mode = _mode(c.host_config)
        if mode in _SHARED_MODES or mode.startswith("container:"):
            raise errdefs.InvalidArgument("container sharing network namespace with another "
                                          "container or host cannot be connected to any other "
                                          "network" if mode != "none" else
                                          "container cannot be connected to multiple networks "
                                          "with one of the networks in private (none) mode")
        eps = self.store.endpoints.setdefault(c.id, {})
        if net.id in eps:
            raise errdefs.PermissionDenied(f"endpoint with name {c.name.lstrip('/')} already "
                                           f"exists in network {net.name}")
        cfg = cfg or {}
        _check_aliases(cfg)
        if (cfg.get("IPAMConfig") or {}).get("IPv4Address") and net.default:
            raise errdefs.InvalidArgument("user specified IP address is supported on user "
                                          "defined networks only")
        ep = self._endpoint(net, cfg)
        eps[net.id] = ep
        if ns_path and c.state.running and self.enabled:
            await self._settle(c.id)
            used = {e.ifname for e in eps.values() if e.ifname}
            ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
            try:
                await self._plug(c, ep, ns_path, ifname, primary=not used)
            except BaseException:
                del eps[net.id]
                raise
            self._write_hosts(c)
            self._refresh_peers(c)
        self._save(durable=True)
        self._event("connect", net, c)

    async def disconnect(self, ref: str, c: Container, force: bool = False) -> None:
        net = self.find(ref)
        eps = self.store.endpoints.get(c.id) or {}
        ep = eps.get(net.id)
        if ep is None:
            raise errdefs.PermissionDenied(f"container {c.id} is not connected to network "
                                           f"{net.name}")
        if ep.host_veth and self.enabled:
            with contextlib.suppress(errdefs.EngineError):
                await self.links.delete(ep.host_veth)
        if ep.ip:
            net.pool.release(ep.ip)
        del eps[net.id]
        if not eps:
            await self._stop_proxies(c.id)
            self.store.ports.pop(c.id, None)
        self._save(durable=True)
        self._write_hosts(c)
        self._refresh_peers_of(net.id)
        self._event("disconnect", net, c)

    def renamed(self, c: Container) -> None:
        """After `docker rename`: the members of c's user-defined networks see the new
        name in their /etc/hosts."""
        if any(ep.ip for ep in (self.store.endpoints.get(c.id) or {}).values()):
            self._refresh_peers(c)

    def _refresh_peers_of(self, network_id: str) -> None:
        net = self.store.networks.get(network_id)
        if net is None or net.default:
            return
        for cid, eps in self.store.endpoints.items():
            other = self.containers.get(cid)
            if other is not None and network_id in eps and eps[network_id].ip:
                self._write_hosts(other)

    # --- networks API --------------------------------------------------------------------

    async def create_network(self, body: dict[str, Any]) -> tuple[str, str]:
        """POST /networks/create -> (id, warning)."""
        name = body.get("Name") or ""
        if not name:
            raise errdefs.InvalidArgument("network name cannot be empty")
        if name in ("bridge", "host", "none", "default"):
            raise errdefs.PermissionDenied(f"{name} is a pre-defined network and cannot be "
                                           "created")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise errdefs.NotFound(f"could not find plugin {driver} in v1 plugin registry: "
                                   "plugin not found")
        if body.get("EnableIPv6"):
            raise errdefs.InvalidArgument("IPv6 networks are not supported by this engine")
        async with self._lock:
            if self.store.by_name(name) is not None:
                raise errdefs.AlreadyExists(f"network with name {name} already exists")
            configs = [c for c in ((body.get("IPAM") or {}).get("Config") or []) if c]
            if len(configs) > 1:
                raise errdefs.InvalidArgument("only one IPv4 subnet per network is supported "
                                              "by this engine")
            cfg = configs[0] if configs else {}
            used = await self._subnets_in_use()
            if cfg.get("Subnet"):
                subnet = ipam.parse_subnet(cfg["Subnet"])
                if any(subnet.overlaps(u) for u in used):
                    raise errdefs.InvalidArgument("Pool overlaps with other one on this address "
                                                  "space")
            elif cfg.get("Gateway") or cfg.get("IPRange"):
                what = ("gateway " + cfg["Gateway"]) if cfg.get("Gateway") else (
                    "range " + cfg["IPRange"])
                raise errdefs.InvalidArgument(f"no matching subnet for {what}")
            else:
                subnet = ipam.pick_subnet(used)
            pool = ipam.Pool.create(str(subnet), cfg.get("Gateway") or None,
                                    cfg.get("IPRange") or None,
                                    cfg.get("AuxiliaryAddresses") or None)
            nid = ids.new_id()
            opts = dict(body.get("Options") or {})
            bridge = opts.get("com.docker.network.bridge.name") or f"br-{nid[:12]}"
            if not _valid_ifname(bridge) or any(n.bridge == bridge
                                                for n in self.store.networks.values()):
                raise errdefs.InvalidArgument(f"invalid or taken bridge name {bridge!r}")
            net = Network(id=nid, name=name, bridge=bridge, pool=pool, created=time.time(),
                          internal=bool(body.get("Internal")),
                          attachable=bool(body.get("Attachable")),
                          labels=dict(body.get("Labels") or {}), options=opts,
                          ipam_config=[{k: v for k, v in cfg.items() if v}] if cfg else [])
            if self.enabled:
                if await self.links.index(net.bridge) is not None:
                    raise errdefs.PermissionDenied(f"bridge name {bridge} is already in use "
                                                   "by a device of this host")
                try:
                    await self.links.ensure_bridge(net.bridge, pool.gateway, pool.prefixlen)
                except BaseException:
                    with contextlib.suppress(errdefs.EngineError):
                        await self.links.delete(net.bridge)
                    raise
            self.store.networks[nid] = net
            self._save(durable=True)
            if self.enabled:
                await self._apply_firewall()
                await asyncio.to_thread(_enable_forwarding)
        self._event("create", net)
        return nid, ""

    async def remove_network(self, ref: str) -> None:
        if ref in _PSEUDO or ref == "bridge" and self.default_network() is None:
            raise errdefs.PermissionDenied(f"{ref} is a pre-defined network and cannot be "
                                           "removed")
        net = self.find(ref)
        if net.default:
            raise errdefs.PermissionDenied(f"{net.name} is a pre-defined network and cannot be "
                                           "removed")
        async with self._lock:
            if self.attached(net.id):
                raise errdefs.FailedPrecondition(
                    f"error while removing network: network {net.name} id {net.id} has active "
                    "endpoints")
            self._drop_network(net.id)  # stopped members: their start reports it missing
            self._save(durable=True)
            if self.enabled:
                if net.owns_bridge:
                    await self.links.delete(net.bridge)
                await self._apply_firewall()
        self._event("destroy", net)

    async def prune(self, keep: Callable[[Network], bool]) -> list[str]:
        removed = []
        for net in list(self.store.networks.values()):
            if net.default or self.attached(net.id) or keep(net):
                continue
            with contextlib.suppress(errdefs.EngineError):
                await self.remove_network(net.id)
                removed.append(net.name)
        return removed

    def networks(self) -> list[dict[str, Any]]:
        """Every network in Docker's shape: the bridges, then host and none."""
        out = [self.network_json(n) for n in self.store.networks.values()]
        if self.default_network() is None:
            out.insert(0, self._pseudo_json("bridge"))
        out += [self._pseudo_json(name) for name in _PSEUDO]
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        for name in ("bridge", *_PSEUDO):
            if name == "bridge" and self.default_network() is not None:
                continue
            if ref == name or (len(ref) >= 3 and _pseudo_id(name).startswith(ref)):
                return self._pseudo_json(name)
        return self.network_json(self.find(ref))

    def network_json(self, net: Network) -> dict[str, Any]:
        containers = {}
        for cid, eps in self.store.endpoints.items():
            ep = eps.get(net.id)
            c = self.containers.get(cid)
            if ep is None or c is None or not ep.ip:
                continue
            containers[cid] = {"Name": c.name.lstrip("/"), "EndpointID": ep.endpoint_id,
                               "MacAddress": ep.mac,
                               "IPv4Address": f"{ep.ip}/{net.pool.prefixlen}",
                               "IPv6Address": ""}
        ipam_cfg = {"Subnet": net.pool.subnet, "Gateway": net.pool.gateway}
        if net.pool.ip_range:
            ipam_cfg["IPRange"] = net.pool.ip_range
        for cfg in net.ipam_config[:1]:
            if cfg.get("AuxiliaryAddresses"):
                ipam_cfg["AuxiliaryAddresses"] = cfg["AuxiliaryAddresses"]
        return {"Name": net.name, "Id": net.id, "Created": rfc3339(net.created),
                "Scope": "local", "Driver": net.driver, "EnableIPv4": True,
                "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": None if net.default else {},
                         "Config": [ipam_cfg]},
                "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
                "Options": dict(net.options), "Labels": dict(net.labels)}

    def _pseudo_json(self, name: str) -> dict[str, Any]:
        containers = {}
        for c in self.containers.values():
            mode = _mode(c.host_config)
            if (mode == name or name == "bridge" and mode == "default") and c.state.running:
                containers[c.id] = {"Name": c.name.lstrip("/"), "EndpointID": "",
                                    "MacAddress": "", "IPv4Address": "", "IPv6Address": ""}
        return {"Name": name, "Id": _pseudo_id(name), "Created": rfc3339(0), "Scope": "local",
                "Driver": _PSEUDO.get(name, "bridge"), "EnableIPv4": name == "bridge",
                "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None,
                                              "Config": []},
                "Internal": False, "Attachable": False, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
                "Options": {}, "Labels": {}}

    def _event(self, action: str, net: Network, c: Container | None = None) -> None:
        if self._publish is None:
            return
        attrs = {"name": net.name, "type": net.driver}
        if c is not None:
            attrs["container"] = c.id
        self._publish("network", action, net.id, attrs)

    # --- a container's NetworkSettings ---------------------------------------------------

    def settings(self, c: Container) -> dict[str, Any] | None:
        """inspect's NetworkSettings for a bridged container (None: views' default)."""
        eps = self.store.endpoints.get(c.id)
        if not eps:
            return None
        running = c.state.running
        networks = {}
        top: dict[str, Any] = {"EndpointID": "", "Gateway": "", "IPAddress": "",
                               "IPPrefixLen": 0, "MacAddress": ""}
        for ep in eps.values():
            net = self.store.networks.get(ep.network_id)
            if net is None:
                continue
            active = bool(ep.ip) and running
            entry = {"IPAMConfig": {"IPv4Address": ep.ipv4_request} if ep.ipv4_request
                     else None, "Links": None, "Aliases": ep.aliases or None,
                     "MacAddress": ep.mac if active else "", "DriverOpts": None,
                     "NetworkID": net.id, "EndpointID": ep.endpoint_id if active else "",
                     "Gateway": net.pool.gateway if active else "",
                     "IPAddress": ep.ip if active else "",
                     "IPPrefixLen": net.pool.prefixlen if active else 0, "IPv6Gateway": "",
                     "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                     "DNSNames": None if net.default else
                     [c.name.lstrip("/"), *ep.aliases, c.id[:12]]}
            networks[net.name] = entry
            if net.default and active:
                top = {k: entry[k] for k in top}
        ports: dict[str, Any] = {}
        if running:
            for key in (c.config.get("ExposedPorts") or {}):
                ports[key if "/" in key else f"{key}/tcp"] = None
            ports.update(self.store.ports.get(c.id) or {})
        return {"Bridge": "", "SandboxID": hashlib.sha256(c.id.encode()).hexdigest()
                if running else "", "SandboxKey": os.path.join(self.exec_root, "netns", c.id)
                if running else "", "HairpinMode": False, "LinkLocalIPv6Address": "",
                "LinkLocalIPv6PrefixLen": 0, "Ports": ports, "SecondaryIPAddresses": None,
                "SecondaryIPv6Addresses": None, "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "IPv6Gateway": "", **top, "Networks": networks}

    def summary(self, c: Container, entry: dict[str, Any]) -> None:
        """Fill a `docker ps` entry's Ports and NetworkSettings.Networks in place."""
        settings = self.settings(c)
        if settings is None:
            return
        entry["NetworkSettings"] = {"Networks": settings["Networks"]}
        ports = []
        for key, binds in (settings.get("Ports") or {}).items():
            try:
                port, proto = _port_key(key)
            except errdefs.InvalidArgument:
                continue  # an image's odd ExposedPorts key must not fail every `docker ps`
            if not binds:
                ports.append({"PrivatePort": port, "Type": proto})
            for b in binds or []:
                ports.append({"IP": b["HostIp"], "PrivatePort": port,
                              "PublicPort": int(b["HostPort"]), "Type": proto})
        entry["Ports"] = ports


_IFNAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}")


def _check_aliases(cfg: Mapping[str, Any]) -> None:
    """Aliases become /etc/hosts names of the network's other members: one word each
    (a space or newline would add names or whole lines to their files)."""
    for alias in cfg.get("Aliases") or []:
        if not isinstance(alias, str) or not alias or any(
                ch.isspace() or ord(ch) < 0x20 or ch == "#" for ch in alias):
            raise errdefs.InvalidArgument(f"invalid network alias {alias!r}: one name "
                                          "without whitespace")


def _valid_ifname(name: str) -> bool:
    """A bridge name that is safe as an iptables word: the kernel would take `br+` or
    `-j`, but iptables reads `+` as a wildcard (`-i br+` matches every br* device) and
    a leading `-` as an option, which would break the whole ruleset."""
    return bool(_IFNAME.fullmatch(name)) and name not in (".", "..")


def _enable_forwarding() -> None:
    """net.ipv4.ip_forward=1, as dockerd sets it (only written when it is off)."""
    path = "/proc/sys/net/ipv4/ip_forward"
    try:
        with open(path) as f:
            if f.read().strip() == "1":
                return
        with open(path, "w") as f:
            f.write("1\n")
        log.info("enabled net.ipv4.ip_forward")
    except OSError as err:
        log.warning("could not enable IP forwarding (no outbound traffic): %s", err)
