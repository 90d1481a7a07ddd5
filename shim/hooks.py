"""OCI hooks: run `hooks.<kind>[]` with the container state on stdin.

Owns the execution of one hook list (runtime-spec config.md#posix-platform-hooks):
each hook's `path`, `args` (argv incl. argv[0]), `env`, optional `timeout`
seconds, the state JSON on stdin; a non-zero exit or a timeout fails the
list, except for `poststop` where failures are warnings. It must not decide
when hooks run: container.py does (prestart/createRuntime once the init is
set up, poststart after start, poststop after delete). Loaded only when a
config has hooks (subprocess is expensive to import).
"""

from __future__ import annotations

import sys

from dockyard.errdefs import FailedPrecondition
from dockyard.oci import _json

__all__ = ["HookError", "run_hooks"]


class HookError(FailedPrecondition):
    """A hook failed; the message names the hook kind, path and reason."""


def run_hooks(kind: str, hooks: list[dict], state: dict, warn_only: bool = False) -> None:
    import subprocess

    payload = _json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        path = hook.get("path", "")
        args = hook.get("args") or [path]
        env = dict(item.split("=", 1) for item in hook.get("env") or [] if "=" in item)
        try:
            done = subprocess.run(args, executable=path, input=payload, env=env,
                                  capture_output=True, timeout=hook.get("timeout"))
            if done.returncode != 0:
                err = (done.stderr or done.stdout).decode(errors="replace").strip()
                raise HookError(f"{kind} hook #{i} ({path}) exited with status "
                                f"{done.returncode}{': ' + err if err else ''}")
        except subprocess.TimeoutExpired:
            error = HookError(f"{kind} hook #{i} ({path}) timed out after "
                              f"{hook.get('timeout')}s")
        except OSError as err:
            error = HookError(f"{kind} hook #{i} ({path}): {(err.strerror or '').lower()}")
        except HookError as err:
            error = err
        else:
            continue
        if not warn_only:
            raise error
        sys.stderr.write(f"warning: {error}\n")
