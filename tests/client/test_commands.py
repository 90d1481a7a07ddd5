"""Verbs driven through httpx.MockTransport: requests sent, output printed, exit codes."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from dockyard.client.__main__ import main
from dockyard.client.api import HttpxTransport

CID = "0123456789ab" + "c" * 52


class Router:
    """Routes "METHOD /path" to handlers and records every request."""

    def __init__(self, routes: dict):
        self.routes = routes
        self.calls: list[httpx.Request] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.calls.append(req)
        key = f"{req.method} {req.url.path}"
        handler = self.routes.get(key)
        if handler is None:
            return httpx.Response(404, json={"message": "page not found"})
        if callable(handler):
            return handler(req)
        status, body = handler
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body) if body is not None else httpx.Response(status)

    def keys(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.calls]


def run(router: Router, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), transport=HttpxTransport(httpx.MockTransport(router)),
                stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


PS_ITEM = {"Id": CID, "Names": ["/web"], "Image": "busybox", "Command": "sleep 1000",
           "Created": 1_700_000_000, "State": "running", "Status": "Up 3 seconds",
           "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
           "Labels": {"a": "b"}}


def test_ps_table_lines_up_and_sends_filters():
    router = Router({"GET /containers/json": (200, [PS_ITEM])})
    code, out, _ = run(router, "ps", "-a", "--filter", "status=running", "-f", "name=web")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    assert lines[1].startswith("0123456789ab   busybox   \"sleep 1000\"")
    assert lines[0].index("NAMES") == lines[1].index("web")
    assert lines[0].index("PORTS") == lines[1].index("0.0.0.0:8080->80/tcp")
    q = router.calls[0].url.params
    assert q["all"] == "1"
    assert json.loads(q["filters"]) == {"status": {"running": True}, "name": {"web": True}}


def test_ps_quiet_format_and_json():
    router = Router({"GET /containers/json": (200, [PS_ITEM])})
    assert run(router, "ps", "-q")[1] == "0123456789ab\n"
    assert run(router, "ps", "-q", "--no-trunc")[1] == CID + "\n"
    assert run(router, "ps", "--format", "{{.Names}} {{.State}}")[1] == "web running\n"
    row = json.loads(run(router, "ps", "--format", "json")[1])
    assert row["Names"] == "web" and row["ID"] == "0123456789ab"
    assert run(router, "container", "ls", "--format", "{{.Labels}}")[1] == "a=b\n"


def test_bad_template_is_a_usage_error():
    router = Router({"GET /containers/json": (200, [PS_ITEM])})
    code, _, err = run(router, "ps", "--format", "{{.Names")
    assert code == 125 and "template" in err


def test_inspect_falls_back_to_images_and_formats():
    router = Router({
        "GET /containers/web/json": (200, {"Id": CID, "State": {"Status": "running"}}),
        "GET /containers/busybox/json": (404, {"message": "No such container: busybox"}),
        "GET /images/busybox/json": (200, {"Id": "sha256:ff", "RepoTags": ["busybox:latest"]}),
        "GET /containers/nope/json": (404, {"message": "No such container: nope"}),
        "GET /images/nope/json": (404, {"message": "No such image: nope"}),
    })
    code, out, _ = run(router, "inspect", "web", "busybox")
    assert code == 0
    data = json.loads(out)
    assert [d["Id"] for d in data] == [CID, "sha256:ff"]
    assert out.startswith("[\n    {")  # docker's 4-space indent
    assert run(router, "inspect", "-f", "{{.State.Status}}", "web")[1] == "running\n"
    code, out, err = run(router, "inspect", "nope")
    assert code == 1 and "No such object: nope" in err and json.loads(out) == []
    code, _, err = run(router, "image", "inspect", "web")
    assert code == 1 and err.startswith("Error: ")


def test_run_detached_pulls_missing_image_then_starts():
    state = {"pulled": False}

    def create(req):
        if not state["pulled"]:
            return httpx.Response(404, json={"message": "No such image: busybox:latest"})
        body = json.loads(req.content)
        assert body["Image"] == "busybox" and body["Cmd"] == ["sleep", "9"]
        return httpx.Response(201, json={"Id": CID, "Warnings": ["be careful"]})

    def pull(req):
        state["pulled"] = True
        assert req.url.params["fromImage"] == "busybox" and req.url.params["tag"] == "latest"
        assert req.headers["X-Registry-Auth"]
        lines = [{"status": "Pulling from library/busybox", "id": "latest"},
                 {"status": "Pulling fs layer", "progressDetail": {}, "id": "abc"},
                 {"status": "Downloading", "progressDetail": {"current": 5, "total": 10},
                  "id": "abc"},
                 {"status": "Pull complete", "progressDetail": {}, "id": "abc"},
                 {"status": "Status: Downloaded newer image for busybox:latest"}]
        return httpx.Response(200, content=b"\r\n".join(json.dumps(x).encode()
                                                        for x in lines))

    router = Router({"POST /containers/create": create, "POST /images/create": pull,
                     f"POST /containers/{CID}/start": (204, None)})
    code, out, err = run(router, "run", "-d", "--name", "web", "busybox", "sleep", "9")
    assert code == 0, err
    assert out == CID + "\n"
    assert router.keys() == ["POST /containers/create", "POST /images/create",
                             "POST /containers/create", f"POST /containers/{CID}/start"]
    assert router.calls[0].url.params["name"] == "web"
    assert "Unable to find image 'busybox:latest' locally" in err
    assert "abc: Pull complete" in err and "Downloading" not in err  # not a terminal
    assert "WARNING: be careful" in err


def test_run_pull_never_and_errors_exit_125():
    router = Router({"POST /containers/create":
                     (404, {"message": "No such image: busybox:latest"})})
    code, _, err = run(router, "run", "--pull", "never", "-d", "busybox")
    assert code == 125
    assert err.startswith("dockyard: Error response from daemon: No such image")
    assert "Traceback" not in err


@pytest.mark.parametrize("message,code", [
    ('exec: "/nope": stat /nope: no such file or directory', 127),
    ('exec: "nope": executable file not found in $PATH', 127),
    ("exec: /etc: permission denied", 126),
    ("cgroup: something else broke", 125),
])
def test_run_start_failure_exit_codes(message, code):
    router = Router({"POST /containers/create": (201, {"Id": CID}),
                     f"POST /containers/{CID}/start": (400, {"message": message})})
    got, _, err = run(router, "run", "-d", "busybox", "/nope")
    assert got == code and message in err


def test_run_foreground_exit_code_from_wait():
    router = Router({"POST /containers/create": (201, {"Id": CID}),
                     f"POST /containers/{CID}/attach": (200, b""),
                     f"POST /containers/{CID}/wait": (200, {"StatusCode": 3, "Error": None}),
                     f"POST /containers/{CID}/start": (204, None)})
    code, _, _ = run(router, "run", "--rm", "busybox", "false")
    assert code == 3
    keys = router.keys()
    assert keys.index(f"POST /containers/{CID}/attach") < keys.index(
        f"POST /containers/{CID}/start")
    assert keys.index(f"POST /containers/{CID}/wait") < keys.index(
        f"POST /containers/{CID}/start")
    wait = router.calls[keys.index(f"POST /containers/{CID}/wait")]
    assert wait.url.params["condition"] == "removed"


def test_lifecycle_verbs_print_names_and_collect_errors():
    router = Router({"POST /containers/a/stop": (204, None),
                     "POST /containers/b/stop": (404, {"message": "No such container: b"}),
                     "POST /containers/a/kill": (204, None),
                     "DELETE /containers/a": (204, None),
                     "POST /containers/a/wait": (200, {"StatusCode": 137}),
                     "POST /containers/a/rename": (204, None)})
    code, out, err = run(router, "stop", "-t", "2", "a", "b")
    assert (code, out, err) == (1, "a\n", "Error response from daemon: No such container: b\n")
    assert router.calls[0].url.params["t"] == "2"
    assert run(router, "kill", "-s", "USR1", "a")[:2] == (0, "a\n")
    assert router.calls[-1].url.params["signal"] == "USR1"
    assert run(router, "rm", "-f", "a")[:2] == (0, "a\n")
    assert router.calls[-1].url.params["force"] == "1"
    assert run(router, "wait", "a")[:2] == (0, "137\n")
    assert run(router, "rename", "a", "b2")[0] == 0
    assert router.calls[-1].url.params["name"] == "b2"


def test_images_table_and_rmi_and_tag():
    items = [{"Id": "sha256:" + "f" * 64, "RepoTags": ["busybox:latest", "bb:1"],
              "Created": 1_700_000_000, "Size": 4_261_000},
             {"Id": "sha256:" + "e" * 64, "RepoTags": None, "Created": 1_600_000_000,
              "Size": 10}]
    router = Router({"GET /images/json": (200, items),
                     "DELETE /images/bb:1": (200, [{"Untagged": "bb:1"}]),
                     "POST /images/busybox/tag": (201, None)})
    code, out, _ = run(router, "images")
    lines = out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[1].split()[:3] == ["busybox", "latest", "f" * 12]
    assert lines[1].endswith("4.26MB")
    assert lines[3].split()[:2] == ["<none>", "<none>"]
    assert run(router, "images", "-q")[1] == "f" * 12 + "\n" + "e" * 12 + "\n"
    assert run(router, "rmi", "bb:1")[1] == "Untagged: bb:1\n"
    assert run(router, "tag", "busybox", "reg:5000/x/bb:v2")[0] == 0
    assert router.calls[-1].url.params["repo"] == "reg:5000/x/bb"
    assert router.calls[-1].url.params["tag"] == "v2"


def test_pull_stream_error_is_reported():
    body = (b'{"status":"Pulling from x","id":"latest"}\n'
            b'{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}\n')
    router = Router({"POST /images/create": (200, body)})
    code, _, err = run(router, "pull", "nosuch")
    assert code == 1 and "manifest unknown" in err


def test_logs_demultiplexes_stdout_and_stderr():
    frames = b"\x01\x00\x00\x00\x00\x00\x00\x03out" + b"\x02\x00\x00\x00\x00\x00\x00\x03err"
    router = Router({"GET /containers/web/json": (200, {"Id": CID, "Config": {"Tty": False}}),
                     f"GET /containers/{CID}/logs": (200, frames)})
    code, out, err = run(router, "logs", "--tail", "2", "web")
    assert (code, out, err) == (0, "out", "err")
    assert router.calls[-1].url.params["tail"] == "2"


def test_exec_detached_and_exit_code():
    router = Router({"POST /containers/web/exec": (201, {"Id": "e1"}),
                     "POST /exec/e1/start": (200, b""),
                     "GET /exec/e1/json": (200, {"Running": False, "ExitCode": 5})})
    assert run(router, "exec", "web", "sh", "-c", "exit 5")[0] == 5
    body = json.loads(router.calls[0].content)
    assert body["Cmd"] == ["sh", "-c", "exit 5"] and body["AttachStdout"]
    assert run(router, "exec", "-d", "web", "sleep", "1")[0] == 0
    assert json.loads(router.calls[-1].content) == {"Detach": True, "Tty": False}


def test_stats_no_stream_computes_docker_columns():
    sample = {"id": CID, "name": "/web", "read": "2026-01-01T00:00:00Z",
              "cpu_stats": {"cpu_usage": {"total_usage": 2_000_000}, "system_cpu_usage": 20_000_000,
                            "online_cpus": 2},
              "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000},
                               "system_cpu_usage": 10_000_000},
              "memory_stats": {"usage": 3 << 20, "limit": 100 << 20,
                               "stats": {"total_inactive_file": 1 << 20}},
              "pids_stats": {"current": 4},
              "networks": {"eth0": {"rx_bytes": 1000, "tx_bytes": 648}},
              "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}]}}
    router = Router({"GET /containers/web/stats": (200, sample)})
    code, out, _ = run(router, "stats", "--no-stream", "web")
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"]
    assert "20.00%" in row and "2MiB / 100MiB" in row and "2.00%" in row
    assert "1kB / 648B" in row and "4.1kB / 0B" in row and row.rstrip().endswith("4")


def test_unknown_command_and_flag_suggest_the_nearest():
    router = Router({})
    code, _, err = run(router, "pss")
    assert code == 1 and "'pss' is not a dockyard command" in err and "\tps" in err
    code, _, err = run(router, "ps", "--alll")
    assert code == 125 and "unknown flag: --alll" in err and "--all" in err
    code, _, err = run(router, "run")
    assert code == 125 and "requires" in err


def test_no_daemon_says_how_to_start_it(tmp_path):
    err = io.StringIO()
    code = main(["-H", f"unix://{tmp_path}/nope.sock", "ps"], stdout=io.StringIO(), stderr=err)
    assert code == 1
    assert "Cannot connect to the dockyard daemon" in err.getvalue()
    assert "sudo scripts/setup.sh" in err.getvalue()
    code = main(["-H", f"unix://{tmp_path}/nope.sock", "run", "busybox"],
                stdout=io.StringIO(), stderr=io.StringIO())
    assert code == 125


def test_server_error_message_without_traceback():
    router = Router({"POST /containers/web/start": (500, {"message": "shim exploded"})})
    code, _, err = run(router, "start", "web")
    assert code == 1 and err == "Error response from daemon: shim exploded\n"


def test_version_and_info_format():
    router = Router({"GET /version": (200, {"Version": "0.1.0", "ApiVersion": "1.41",
                                            "Components": [{"Name": "Engine",
                                                            "Version": "0.1.0",
                                                            "Details": {"ApiVersion": "1.41"}}]}),
                     "GET /info": (200, {"Containers": 2, "ServerVersion": "0.1.0"})})
    code, out, _ = run(router, "version")
    assert code == 0 and "Client:" in out and "Server:" in out and "1.41" in out
    assert run(router, "version", "-f", "{{.Server.Version}}")[1] == "0.1.0\n"
    assert run(router, "info", "-f", "{{.Containers}}")[1] == "2\n"
    assert "Containers: 2" in run(router, "system", "info")[1]


def test_login_saves_credentials_used_by_pull(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path))
    router = Router({"POST /auth": (200, {"Status": "Login Succeeded"}),
                     "POST /images/create": (200, b'{"status":"done"}\n')})
    code, out, _ = run(router, "login", "-u", "me", "--password-stdin", "127.0.0.1:5000",
                       stdin="secret\n")
    assert code == 0 and "Login Succeeded" in out
    assert json.loads(router.calls[0].content) == {"username": "me", "password": "secret",
                                                   "serveraddress": "127.0.0.1:5000"}
    run(router, "pull", "127.0.0.1:5000/x/y:1")
    import base64

    auth = json.loads(base64.urlsafe_b64decode(router.calls[-1].headers["X-Registry-Auth"]))
    assert auth["username"] == "me" and auth["password"] == "secret"
    assert run(router, "logout", "127.0.0.1:5000")[1].startswith("Removing login")


def test_help_screens():
    router = Router({})
    code, out, _ = run(router, "--help")
    assert code == 0 and "run" in out and "Management Commands" in out
    code, out, _ = run(router, "help", "ps")
    assert code == 0 and "--format" in out


def test_create_prints_the_id_and_writes_the_cidfile(tmp_path):
    router = Router({"POST /containers/create": (201, {"Id": CID, "Warnings": None})})
    cidfile = tmp_path / "cid"
    code, out, _ = run(router, "create", "--cidfile", str(cidfile), "-it", "busybox")
    assert (code, out) == (0, CID + "\n")
    assert cidfile.read_text() == CID
    code, _, err = run(router, "create", "--cidfile", str(cidfile), "busybox")
    assert code == 125 and "container ID file found" in err


def test_system_prune_asks_first_and_reports():
    router = Router({
        "POST /containers/prune": (200, {"ContainersDeleted": ["c1"], "SpaceReclaimed": 1000}),
        "POST /images/prune": (200, {"ImagesDeleted": [{"Deleted": "sha256:ab"}],
                                     "SpaceReclaimed": 2_000_000}),
    })
    code, out, _ = run(router, "system", "prune", stdin="n\n")
    assert code == 0 and "Are you sure" in out and "/containers/prune" not in router.keys()
    code, out, _ = run(router, "system", "prune", "-a", "-f")
    assert code == 0
    assert "Deleted Containers:\nc1\n" in out and "deleted: sha256:ab" in out
    assert out.endswith("Total reclaimed space: 2MB\n")
    images_call = next(r for r in router.calls if r.url.path == "/images/prune")
    assert json.loads(images_call.url.params["filters"]) == {"dangling": {"false": True}}


def test_system_df_table():
    router = Router({"GET /system/df": (200, {
        "LayersSize": 2_000_000,
        "Images": [{"Size": 2_000_000, "Containers": 1}],
        "Containers": [{"SizeRw": 100, "State": "exited"}], "Volumes": [], "BuildCache": []})})
    code, out, _ = run(router, "system", "df")
    lines = out.splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert lines[1].split() == ["Images", "1", "1", "2MB", "0B", "(0%)"]
    assert lines[2].split() == ["Containers", "1", "0", "100B", "100B", "(100%)"]


def test_events_default_line_and_template():
    ev = {"Type": "container", "Action": "die", "Actor": {"ID": "abc", "Attributes": {
        "name": "web", "exitCode": "0"}}, "time": 1_700_000_000, "timeNano": 1_700_000_000_5}
    body = (json.dumps(ev) + "\n").encode()
    router = Router({"GET /events": (200, body)})
    code, out, _ = run(router, "events", "--since", "1h", "--filter", "container=web")
    assert code == 0
    assert out.split(" ", 1)[1] == "container die abc (exitCode=0, name=web)\n"
    assert float(router.calls[0].url.params["since"]) > 0
    assert run(router, "events", "--format", "{{.Actor.Attributes.name}} {{.Action}}")[1] == \
        "web die\n"
    assert json.loads(run(router, "events", "--format", "json")[1]) == ev


def test_history_and_top_tables():
    router = Router({
        "GET /images/busybox/history": (200, [{"Id": "sha256:" + "a" * 64, "Created": 0,
                                               "CreatedBy": "/bin/sh -c #(nop) CMD [\"sh\"]",
                                               "Size": 0, "Comment": ""}]),
        "GET /containers/web/top": (200, {"Titles": ["PID", "CMD"],
                                          "Processes": [["1", "sleep 10"]]}),
    })
    out = run(router, "history", "busybox")[1].splitlines()
    assert out[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert out[1].startswith("a" * 12)
    out = run(router, "top", "web")[1].splitlines()
    assert out == ["PID   CMD", "1     sleep 10"]


def test_cp_argument_forms():
    from dockyard.client.commands.cp import split_arg

    assert split_arg("web:/etc/hosts") == ("web", "/etc/hosts")
    assert split_arg("web:") == ("web", "/")
    assert split_arg("./a:b") == (None, "./a:b")
    assert split_arg("/tmp/x") == (None, "/tmp/x")
    assert split_arg("-") == (None, "-")
    router = Router({})
    code, _, err = run(router, "cp", "a:/x", "b:/y")
    assert code == 1 and "between containers" in err


def test_push_prints_progress_and_digest():
    body = b"\n".join(json.dumps(m).encode() for m in [
        {"status": "The push refers to repository [reg:5000/x]"},
        {"status": "Preparing", "progressDetail": {}, "id": "aaa"},
        {"status": "Pushing", "progressDetail": {"current": 1, "total": 2}, "id": "aaa"},
        {"status": "Pushed", "progressDetail": {}, "id": "aaa"},
        {"status": "v1: digest: sha256:00 size: 5"},
        {"aux": {"Tag": "v1", "Digest": "sha256:00", "Size": 5}}])
    router = Router({"POST /images/reg:5000/x/push": (200, body)})
    code, out, _ = run(router, "push", "reg:5000/x:v1")
    assert code == 0
    assert router.calls[0].url.params["tag"] == "v1"
    assert "aaa: Pushed" in out and "Pushing" not in out
    assert out.count("digest: sha256:00") == 1
