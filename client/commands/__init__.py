"""The command table: which module serves each verb, and the one-line help.

Owns: the verb -> module map that lets `dockyard` import only the module of the
command it runs (start-up cost), the management-command aliases
(`container ls` = `ps`; `network ls` is the verb "network ls", whose
parser is named so, giving docker's "dockyard network ls" usage line), and the
shared command context. Each module in this
package exposes `register(subparsers)` and one function per verb.
"""

from __future__ import annotations

__all__ = ["COMMANDS", "ALIASES", "NOUNS"]

# verb: (module, summary) -- in `dockyard --help` order
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("container", "Create and run a new container from an image"),
    "exec": ("container", "Execute a command in a running container"),
    "ps": ("container", "List containers"),
    "create": ("container", "Create a new container"),
    "start": ("container", "Start one or more stopped containers"),
    "stop": ("container", "Stop one or more running containers"),
    "restart": ("container", "Restart one or more containers"),
    "kill": ("container", "Kill one or more running containers"),
    "rm": ("container", "Remove one or more containers"),
    "logs": ("container", "Fetch the logs of a container"),
    "attach": ("container", "Attach local standard input, output, and error streams "
                            "to a running container"),
    "inspect": ("inspect", "Return low-level information on dockyard objects"),
    "top": ("container", "Display the running processes of a container"),
    "stats": ("stats", "Display a live stream of container(s) resource usage statistics"),
    "cp": ("cp", "Copy files/folders between a container and the local filesystem"),
    "wait": ("container", "Block until one or more containers stop, then print their "
                          "exit codes"),
    "rename": ("container", "Rename a container"),
    "pause": ("container", "Pause all processes within one or more containers"),
    "unpause": ("container", "Unpause all processes within one or more containers"),
    "update": ("container", "Update configuration of one or more containers"),
    "port": ("network", "List port mappings or a specific mapping for the container"),
    "export": ("container", "Export a container's filesystem as a tar archive"),
    "commit": ("container", "Create a new image from a container's changes"),
    "pull": ("image", "Download an image from a registry"),
    "push": ("image", "Upload an image to a registry"),
    "images": ("image", "List images"),
    "rmi": ("image", "Remove one or more images"),
    "tag": ("image", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "save": ("image", "Save one or more images to a tar archive"),
    "load": ("image", "Load an image from a tar archive or STDIN"),
    "import": ("image", "Import the contents from a tarball to create a filesystem image"),
    "history": ("image", "Show the history of an image"),
    "events": ("system", "Get real time events from the server"),
    "info": ("system", "Display system-wide information"),
    "system": ("system", "Manage dockyard (df, prune, info, events)"),
    "network connect": ("network", "Connect a container to a network"),
    "network create": ("network", "Create a network"),
    "network disconnect": ("network", "Disconnect a container from a network"),
    "network inspect": ("network", "Display detailed information on one or more networks"),
    "network ls": ("network", "List networks"),
    "network prune": ("network", "Remove all unused networks"),
    "network rm": ("network", "Remove one or more networks"),
    "volume create": ("volume", "Create a volume"),
    "volume inspect": ("volume", "Display detailed information on one or more volumes"),
    "volume ls": ("volume", "List volumes"),
    "volume prune": ("volume", "Remove unused local volumes"),
    "volume rm": ("volume", "Remove one or more volumes"),
    "version": ("system", "Show the dockyard version information"),
    "login": ("system", "Log in to a registry"),
    "logout": ("system", "Log out from a registry"),
}

# management commands: `dockyard container ls` runs `ps`
NOUNS: dict[str, dict[str, str]] = {
    "container": {"ls": "ps", "list": "ps", "ps": "ps", "remove": "rm", "inspect": "inspect",
                  **{v: v for v in ("run", "exec", "create", "start", "stop", "restart",
                                    "kill", "rm", "logs", "attach", "top", "stats", "cp",
                                    "wait", "rename", "pause", "unpause", "update",
                                    "export", "commit", "port")}},
    "image": {"ls": "images", "list": "images", "rm": "rmi", "remove": "rmi",
              "inspect": "inspect",
              **{v: v for v in ("pull", "push", "tag", "save", "load", "import", "history")}},
    "network": {"list": "network ls", "remove": "network rm",
                **{v: f"network {v}" for v in ("connect", "create", "disconnect", "inspect",
                                               "ls", "prune", "rm")}},
    "volume": {"list": "volume ls", "remove": "volume rm",
               **{v: f"volume {v}" for v in ("create", "inspect", "ls", "prune", "rm")}},
}

ALIASES: dict[str, str] = {}
