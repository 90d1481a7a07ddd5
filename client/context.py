"""What every verb function receives, and the argparse flavour that talks like docker.

Owns: `Context` (the lazily built API client, output streams, trace), the
`CLIError` that carries an exit code, `DockyardParser` (unknown flags get a
"did you mean" and exit 125, as docker's cobra does), and the translation of
API/transport failures into messages a person can act on.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from dockyard.client import api

if TYPE_CHECKING:
    from typing import Any, NoReturn, TextIO

__all__ = ["CLIError", "UsageError", "Context", "DockyardParser", "add_verb", "daemon_hint"]


class UsageError(ValueError):
    """A flag value that cannot mean anything: the CLI exits 125 with this message.

    (Defined here, not in opts.py, so verbs can catch it without importing the flag
    parsers on every command.)
    """


class CLIError(Exception):
    """Stop the command: print message (if any) to stderr and exit with code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.message = message
        self.code = code


class DockyardParser(argparse.ArgumentParser):
    """argparse with docker's wording and exit code for bad usage (125)."""

    out: Any = None  # where --help goes (the command's stdout)

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            (file if file not in (None, sys.stdout) else (self.out or sys.stdout)).write(message)

    def error(self, message: str) -> NoReturn:
        hint = ""
        if "unrecognized arguments:" in message:
            bad = message.split(":", 1)[1].split()
            flags = [b for b in bad if b.startswith("-")]
            if flags:
                import difflib

                flag = flags[0].split("=", 1)[0]
                choices = [s for s in self._option_string_actions if s.startswith("--")]
                close = difflib.get_close_matches(flag, choices, n=1, cutoff=0.6)
                message = f"unknown flag: {flag}"
                if close:
                    hint = f"\n\nDid you mean this?\n\t{close[0]}"
            else:
                message = f"too many arguments: {' '.join(bad)}"
        elif "the following arguments are required" in message:
            names = message.split(":", 1)[1].strip()
            message = f"\"{self.prog}\" requires {names.upper().replace(',', ' and')}"
        raise CLIError(f"dockyard: {message}{hint}\n"
                       f"See '{self.prog} --help'.\n\n"
                       f"Usage:  {self.format_usage().split(':', 1)[1].strip()}", 125)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise CLIError("", status)


class _Ignored:
    """Stands in for the parsers of verbs this run does not need: building every
    parser of a module (run/create have ~90 flags each) costs each command ~10-30 ms."""

    def __getattr__(self, name: str) -> Any:
        return self._noop

    def _noop(self, *args: Any, **kwargs: Any) -> _Ignored:
        return self


class _OneVerb:
    """A subparsers action that only really builds the parser of one verb."""

    def __init__(self, subparsers: Any, verb: str):
        self.subparsers = subparsers
        self.verb = verb
        self.choices = subparsers.choices

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if name == self.verb:
            return self.subparsers.add_parser(name, **kwargs)
        return _Ignored()


class HelpFormatter(argparse.HelpFormatter):
    """docker's help layout: "Usage:", an "Options:" list, value kinds (string, list, int)."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=32, width=100)

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: Any = None) -> None:
        super().add_usage(usage, actions, groups, "Usage:  ")

    def add_arguments(self, actions: Any) -> None:
        # positionals are in the usage line already, as docker shows them
        super().add_arguments([a for a in actions if a.option_strings])

    def _format_action_invocation(self, action: argparse.Action) -> str:
        opts = ", ".join(action.option_strings)
        if action.option_strings[0].startswith("--") and len(action.option_strings) == 1:
            opts = "    " + opts  # long-only flags line up under the long ones
        if action.nargs == 0:
            return opts
        if isinstance(action, argparse._AppendAction):
            kind = "list"
        elif action.type is int:
            kind = "int"
        elif action.metavar and action.metavar.isupper() is False:
            kind = action.metavar
        else:
            kind = "string"
        return f"{opts} {kind}"


def add_verb(subparsers: Any, name: str, func: Any, usage: str, summary: str,
             short_help: bool = True) -> DockyardParser:
    """Register one verb: its parser (docker-like usage line, --help, --trace) and function.

    short_help=False keeps -h free (run/create use it for --hostname).
    """
    p: DockyardParser = subparsers.add_parser(
        name, prog=f"dockyard {name}", usage=f"dockyard {name} {usage}",
        description=summary, add_help=False, allow_abbrev=False,
        formatter_class=HelpFormatter)
    if isinstance(p, argparse.ArgumentParser):
        p._optionals.title = "Options"
    p.add_argument(*(("-h", "--help") if short_help else ("--help",)), action="help",
                   help="Print usage")
    p.add_argument("--trace", action="store_true",
                   help="Print this request's path through the engine, with times")
    p.set_defaults(func=func)
    return p


def daemon_hint(exc: api.DaemonUnreachable) -> str:
    """What to tell a person whose daemon cannot be reached."""
    if exc.permission:
        return (f"permission denied while trying to connect to the dockyard daemon socket at "
                f"{exc.host}: {exc.reason}\n"
                "Run dockyard as root (sudo dockyard ...), or ask an administrator to "
                "give your user access to that socket.")
    return (f"Cannot connect to the dockyard daemon at {exc.host} ({exc.reason}). "
            "Is dockyard-apid running?\n"
            "Start the engine with:  sudo scripts/setup.sh   (from the dockyard checkout)\n"
            "or point -H / DOCKYARD_HOST at a running daemon's socket.")


class Context:
    """The state one command run needs; `client` connects on first use.

    (A plain class, not a dataclass: importing dataclasses costs every command ~15 ms.)
    """

    def __init__(self, host: str | None, transport: Any, out: TextIO, err: TextIO,
                 stdin: Any, debug: bool = False, trace: bool = False):
        self.host = host
        self.transport = transport
        self.out = out
        self.err = err
        self.stdin = stdin
        self.debug = debug
        self.trace = trace
        self.verb = ""
        self._client: api.Client | None = None

    @property
    def client(self) -> api.Client:
        if self._client is None:
            try:
                self._client = api.Client(self.host, self.transport)
            except ValueError as e:
                raise CLIError(f"dockyard: {e}", 125) from e
        return self._client

    def dispatch(self, module: Any, verb: str, args: list[str]) -> int:
        """Parse args for verb with module's parsers, run it, map failures to exit codes."""
        self.verb = verb
        DockyardParser.out = self.out
        root = DockyardParser(prog="dockyard", add_help=False, allow_abbrev=False)
        subparsers = root.add_subparsers(dest="verb", parser_class=DockyardParser)
        module.register(_OneVerb(subparsers, verb))
        parser = subparsers.choices[verb]
        ns = parser.parse_args(args)
        # run/create answer failures with 125, other verbs with 1 (docker's cobra commands)
        failure = getattr(ns, "failure_code", 1)
        tracer = None
        if self.trace or getattr(ns, "trace", False):
            from dockyard.client import trace as trace_mod

            tracer = trace_mod.Tracer()
            self.client.extra_headers["traceparent"] = tracer.traceparent
        try:
            code = ns.func(self, ns)
        except api.APIError as e:
            prefix = "dockyard: " if failure == 125 else ""
            raise CLIError(f"{prefix}Error response from daemon: {e.message}", failure) from e
        except api.DaemonUnreachable as e:
            raise CLIError(daemon_hint(e), failure) from e
        except (ConnectionError, TimeoutError) as e:
            raise CLIError(f"error during connect to {self.client.host}: {e}", failure) from e
        finally:
            if tracer is not None:
                tracer.report(self)
        return code or 0
