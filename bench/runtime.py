"""dockyard-shim against runc on the same busybox bundle (issue 2 §8).

Three operations, each timed from the caller's side (fork/exec of the
runtime binary to its exit), interleaved shim/runc so both see the same
machine load, at least 20 runs each:

- `run`: `run --bundle B <id>` of `/bin/true`, attached (waits for the exit);
- `exec`: `exec <id> /bin/true` into a running `sleep` container;
- `create+start+delete`: the three commands back to back (`/bin/true`),
  `delete --force` because the program may still be exiting.

Prints the medians and the ratio shim/runc (target: <= 1.0) and, with
--write, replaces the shim section of bench/RESULTS.md. Needs root.

    sudo .venv/bin/python bench/runtime.py --runs 20 --write
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from helpers import busybox  # noqa: E402

RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## shim: dockyard-shim vs runc (bench/runtime.py)"


def launcher(tmp: Path, python: str, name: str) -> str:
    """The shim as scripts/install.sh writes it, on `python` (shim/lean.py `launcher`)."""
    from dockyard.shim.lean import launcher as text

    path = tmp / name
    path.write_text(text(python, str(REPO)))
    path.chmod(0o755)
    return str(path)


def installed_launcher() -> str:
    """.venv/bin/dockyard-shim when installed, else the checkout's bin/dockyard-shim."""
    venv = REPO / ".venv" / "bin" / "dockyard-shim"
    return str(venv if venv.exists() else REPO / "bin" / "dockyard-shim")


def call(argv: list[str]) -> float:
    with open(os.devnull, "r+") as null:
        start = time.perf_counter()
        rc = subprocess.call(argv, stdin=null, stdout=null, stderr=null)
        took = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"{argv} failed with rc={rc}")
    return took


def reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Runtime:
    def __init__(self, name: str, binary: str, root: Path) -> None:
        self.name = name
        self.base = [binary, "--root", str(root)]

    def run(self, bundle: Path) -> float:
        return call([*self.base, "run", "--bundle", str(bundle), f"b-{uuid.uuid4().hex[:8]}"])

    def exec(self, cid: str) -> float:
        return call([*self.base, "exec", cid, "/bin/true"])

    def lifecycle(self, bundle: Path) -> tuple[float, float, float]:
        """(create, start, delete) times of one container."""
        cid = f"b-{uuid.uuid4().hex[:8]}"
        return (call([*self.base, "create", "--bundle", str(bundle), cid]),
                call([*self.base, "start", cid]),
                call([*self.base, "delete", "--force", cid]))


def bench(runs: int, runc_path: str, pythons: list[str]) -> dict[str, dict[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="dy-bench-"))
    # state dirs on tmpfs, as /run is on normal hosts (not on these VMs)
    run_dir = Path(tempfile.mkdtemp(prefix="dy-bench-", dir="/dev/shm"))
    try:
        # orphaned inits come back to us, so nothing stays a zombie
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
        true_bundle = busybox.make_bundle(tmp / "true", busybox.base_config(["/bin/true"]))
        sleep_bundle = busybox.make_bundle(tmp / "sleep", busybox.base_config(["sleep", "600"]),
                                           rootfs=true_bundle / "rootfs")
        # the launcher as installed (scripts/install.sh points its shebang at the
        # venv's python -IS; a checkout's bin/dockyard-shim hops through /bin/sh),
        # then one direct `#!<python> -IS` launcher per interpreter asked for
        runtimes = [Runtime("shim:installed", installed_launcher(), run_dir / "shim-root-bin")]
        runtimes += [Runtime(f"shim:{py}", launcher(tmp, py, f"dockyard-shim-{i}"),
                             run_dir / f"shim-root-{i}") for i, py in enumerate(pythons)]
        runtimes.append(Runtime("runc", runc_path, run_dir / "runc-root"))
        for rt in runtimes:  # warm caches (page cache, pyc) before measuring
            rt.run(true_bundle)
            call([*rt.base, "run", "--detach", "--bundle", str(sleep_bundle), "sleeper"])
        times: dict[str, dict[str, list[float]]] = {
            op: {rt.name: [] for rt in runtimes}
            for op in ("run", "exec", "create+start+delete", "- create", "- start", "- delete")}
        for i in range(runs):
            order = runtimes if i % 2 == 0 else runtimes[::-1]
            for rt in order:
                times["run"][rt.name].append(rt.run(true_bundle))
            for rt in order:
                times["exec"][rt.name].append(rt.exec("sleeper"))
            for rt in order:
                parts = rt.lifecycle(true_bundle)
                times["create+start+delete"][rt.name].append(sum(parts))
                for op, took in zip(("- create", "- start", "- delete"), parts, strict=True):
                    times[op][rt.name].append(took)
            reap_all()
        for rt in runtimes:
            call([*rt.base, "delete", "--force", "sleeper"])
        reap_all()
        return {op: {name: statistics.median(v) * 1000 for name, v in per.items()}
                for op, per in times.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


NOTES = """\
Where the time goes (traces: `TRACEPARENT=00-<32 hex>-<16 hex>-01
DOCKYARD_TRACE_DIR=/tmp/t dockyard-shim run ...`, `python -X importtime`,
`strace -f -tt`):

- The interpreter: `python -I -S -c pass` alone is 7-10 ms at rest and
  14-17 ms on this shared box under load (Debian's static python3.11; pyenv's
  shared-library build ~20-30 % slower), while a whole `runc state` is
  3 ms at rest and 6-7 ms under the same load. So `start` and `delete`, which
  do almost nothing (start: read state.json and /proc/<pid>/stat, open and
  read the exec fifo, unlink it; delete: the same checks, one rmdir per
  saved cgroup directory, remove the state dir), are ~2x runc's by
  start-up alone, and `create+start+delete` pays it three times: that row
  cannot reach 1.0 with CPython. `run` and `exec` pay it once and are at
  0.99-1.3.
- The shim's own imports on top of the interpreter (the `start`/`delete`
  path, `-X importtime`, loaded box): `os` 2.1 ms (its `_collections_abc`
  alone 1.2 ms; `-S` means nothing imported it before), resolving the
  `dockyard`/`dockyard.shim` packages 0.7 ms, cli 1.0 ms (a 47 KB pyc),
  `_json`+log 0.8 ms, container 1.2 ms, `__future__` 0.2 ms: ~5 ms,
  i.e. `state` of a missing id is 19.4 ms against 14.3 ms for
  `python -IS -c pass` (runc: 6.7 ms).
- Imports: stdlib C modules only, no `json`/`re`/`enum`/`typing`/`ctypes`
  package (the C cores `_json` and `_ctypes` are used directly), verb code
  imported on demand; what only the forked child runs is imported just
  before fork (importing in the fresh child measured 10-15 % slower).
  `delete` and `exec` work from the cgroup paths saved in state.json and
  import no cgroup manager (-2 to -3 ms on delete); gc is off in the CLI
  process (no measurable change, kept as harmless).
- The launcher: scripts/install.sh writes the installed dockyard-shim as
  `#!<venv>/bin/python3 -IS` + the checkout's src/ on sys.path: no /bin/sh
  exec (0.5 ms) and no package search (listing site-packages, reading the
  editable finder: 0.5-1.4 ms more per call).
- The kernel: a cgroup.procs write after a quiet spell waits for an RCU
  grace period (cgroup_threadgroup_rwsem; 5-25 ms on this loaded box, runc
  pays it on the same write). The shim keeps that lock warm with no-op
  self-migrations from a thread while it starts (shim/_warm.py, joined
  before every fork; stop() now wakes it instead of waiting out its 2 ms
  pause, ~1 ms less per stop), and overlaps the rest: the init unshares,
  mounts, makes devices, pivots and masks paths while the parent creates
  and joins the cgroup and applies linux.resources; an exec child does its
  whole setup meanwhile and waits only before execve. What is left: the
  join before fork still waits for the warm-up's first write when the grace
  period outlasts the imports (median ~5 ms with a cold lock).
- Interpreter finalization is skipped (os._exit after flushing).
"""


def report(results: dict[str, dict[str, float]], runs: int, pythons: list[str]) -> str:
    load = os.getloadavg()[0]
    shims = ["shim:installed"] + [f"shim:{py}" for py in pythons]
    first = installed_launcher().replace(str(REPO), ".")
    with open(installed_launcher()) as f:
        shebang = f.readline().strip().replace(str(REPO), ".")
    names = [f"{first} (`{shebang}`)"] + [
        f"`#!{py.replace(str(REPO), '.')} -IS`" for py in pythons]
    lines = [SECTION, "",
             f"Median wall time per operation, {runs} interleaved runs each, busybox bundle "
             f"(`/bin/true`), state dirs on tmpfs, runc {runc_version()}; the shim through "
             "the installed launcher and through direct `python -IS` launchers; load average "
             f"{load:.2f} at the end "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): the box is shared "
             "with other engineers' test runs, so compare the ratios, not the absolute "
             "times (runc run is ~25 ms on an idle box).", "",
             "| operation | runc (ms) | " + " | ".join(
                 f"shim via {n} (ms) | ratio" for n in names) + " |",
             "| --- | --- |" + " --- | --- |" * len(names)]
    for op, per in results.items():
        cells = [f"{per[s]:.1f} | {per[s] / per['runc']:.2f}" for s in shims]
        lines.append(f"| {op} | {per['runc']:.1f} | " + " | ".join(cells) + " |")
    lines += ["", NOTES]
    return "\n".join(lines)


def runc_version() -> str:
    out = subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout
    return out.split("\n")[0].replace("runc version ", "")


def write_section(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    if SECTION in old:
        head, _, rest = old.partition(SECTION)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(new)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--runc", default=shutil.which("runc") or "runc")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument("--python", action="append",
                        help="interpreter for the shim, repeatable (stdlib-only: any python "
                             ">= 3.11); default: this one")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    pythons = args.python or [sys.executable]
    results = bench(max(args.runs, 1), args.runc, pythons)
    text = report(results, args.runs, pythons)
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
