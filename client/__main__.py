"""`dockyard`: parse global options, dispatch to one verb, turn errors into messages.

Owns: the global flags (-H/--host, DOCKYARD_HOST, --trace, -D), the help
screen, suggestions for unknown commands and flags, and the mapping of
failures to docker's exit codes (125 for CLI/daemon errors, 1 for an API error
outside run). Must not: build API requests (the command modules do) or import
anything a verb does not need (every command pays this module's start-up).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from dockyard.client.commands import COMMANDS, NOUNS

if TYPE_CHECKING:
    from typing import Any

__all__ = ["main"]

_USAGE = """\
Usage:  dockyard [OPTIONS] COMMAND

A container engine with Docker's architecture (apid -> managerd -> shim)

Options:
  -H, --host string   Daemon socket to connect to (env DOCKYARD_HOST,
                      default unix:///run/dockyard/dockyard.sock)
      --trace         Print the request's path through apid, managerd and the
                      runtime, with times (also: dockyard COMMAND --trace)
  -D, --debug         Show tracebacks of CLI errors
  -v, --version       Print version information and quit
  -h, --help          Print usage

Management Commands:
  container   Manage containers
  image       Manage images
  network     Manage networks
  system      Manage dockyard
  volume      Manage volumes

Commands:
"""


def _print_help(out: Any) -> None:
    out.write(_USAGE)
    for verb, (_, summary) in COMMANDS.items():
        if verb != "system" and " " not in verb:  # management commands are listed above
            out.write(f"  {verb:<10}  {summary}\n")
    out.write("\nRun 'dockyard COMMAND --help' for more information on a command.\n")


def _suggest(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"\n\nDid you mean this?\n\t{close[0]}" if close else ""


def main(argv: list[str] | None = None, *, transport: Any = None,
         stdout: Any = None, stderr: Any = None, stdin: Any = None) -> int:
    """Run one dockyard command; return its exit code.

    Args:
        argv: the arguments after the program name (default sys.argv[1:]).
        transport: an api transport to use instead of the socket (tests).
        stdout, stderr, stdin: text streams (default the process's).
    """
    from dockyard.client.context import CLIError, Context

    args = list(sys.argv[1:] if argv is None else argv)
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    host = os.environ.get("DOCKYARD_HOST") or None
    debug = False
    trace = False
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag in ("-H", "--host"):
            if not args:
                err.write("dockyard: flag needs an argument: --host\n")
                return 125
            host = args.pop(0)
        elif flag.startswith("--host="):
            host = flag.split("=", 1)[1]
        elif flag.startswith("-H") and len(flag) > 2:
            host = flag[2:]
        elif flag in ("-D", "--debug"):
            debug = True
        elif flag == "--trace":
            trace = True
        elif flag in ("-v", "--version"):
            from dockyard import __version__

            out.write(f"dockyard version {__version__}\n")
            return 0
        elif flag in ("-h", "--help"):
            _print_help(out)
            return 0
        else:
            opts = ["--host", "--debug", "--trace", "--version", "--help"]
            err.write(f"unknown flag: {flag}{_suggest(flag, opts)}\n"
                      "See 'dockyard --help'.\n")
            return 125
    if not args:
        _print_help(out)
        return 0
    verb = args.pop(0)
    if verb == "help":
        if args and args[0] in NOUNS:  # `help network` = `network --help`
            verb, args = args[0], ["--help"] + args[1:2]
        elif args and args[0] in COMMANDS:
            verb, args = args[0], ["--help"]
        else:
            _print_help(out)
            return 0
    if verb in NOUNS:
        table = NOUNS[verb]
        if len(args) == 2 and args[0] == "--help" and args[1] in table:  # help network ls
            args = [args[1], "--help"]
        if not args or args[0] in ("-h", "--help"):
            err_out = out if args else err
            lines = [f"Usage:  dockyard {verb} COMMAND\n\nCommands:\n"]
            for sub, target in sorted(table.items()):
                if sub in ("list", "remove") or (verb, sub) == ("container", "ps"):
                    continue  # aliases: docker's help lists each command once
                lines.append(f"  {sub:<10}  {COMMANDS[target][1]}\n")
            lines.append(f"\nRun 'dockyard {verb} COMMAND --help' for more information on "
                         "a command.\n")
            try:
                err_out.write("".join(lines))
                err_out.flush()
            except BrokenPipeError:
                return 141
            return 0 if args else 1
        sub = args.pop(0)
        if sub not in table:
            err.write(f"dockyard: '{verb} {sub}' is not a dockyard command."
                      f"{_suggest(sub, list(table))}\nSee 'dockyard {verb} --help'\n")
            return 1
        if table[sub] == "inspect":
            args = ["--type", verb] + args
        verb = table[sub]
    if verb not in COMMANDS:
        err.write(f"dockyard: '{verb}' is not a dockyard command."
                  f"{_suggest(verb, list(COMMANDS) + list(NOUNS))}\n"
                  "See 'dockyard --help'\n")
        return 1

    import importlib

    module = importlib.import_module(f"dockyard.client.commands.{COMMANDS[verb][0]}")
    ctx = Context(host=host, transport=transport, out=out, err=err,
                  stdin=stdin or sys.stdin, debug=debug, trace=trace)
    try:
        return ctx.dispatch(module, verb, args)
    except CLIError as e:
        if e.message:
            err.write(e.message.rstrip("\n") + "\n")
        return e.code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 -- a person gets a sentence, -D the traceback
        if debug:
            import traceback

            traceback.print_exc(file=err)
        else:
            err.write(f"dockyard: internal error: {type(e).__name__}: {e} "
                      "(run `dockyard -D ...` for the traceback)\n")
        return 1
    except BrokenPipeError:
        # the reader went away (`dockyard ps | head`): stay quiet like other CLIs
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- silences the exit flush
        except OSError:
            pass
        return 141


if __name__ == "__main__":
    sys.exit(main())
