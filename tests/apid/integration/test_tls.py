"""A TCP listener with TLS and client-certificate verification (docker --tlsverify)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.registry import free_port

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(90)]


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=dy-ca",
             "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=dy-{name}",
                 "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext",
                 "-out", f"{name}.pem", cwd=d)
    return d


def test_tls_listener_requires_client_certs(stack, certs, tmp_path):
    port = free_port()
    log = open(tmp_path / "apid-tls.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard.apid", "--data-root", str(tmp_path / "data"),
         "--exec-root", str(tmp_path / "exec"), "-H", f"tcp://127.0.0.1:{port}",
         "--managerd", stack.managerd.address, "--namespace", "dy-tls", "--tlsverify", "--tlscacert",
         str(certs / "ca.pem"), "--tlscert", str(certs / "server.pem"), "--tlskey",
         str(certs / "server-key.pem")], stdout=log, stderr=subprocess.STDOUT)
    try:
        args = [stack.docker_cli, "--tlsverify", "--tlscacert", str(certs / "ca.pem"),
                "--tlscert", str(certs / "client.pem"), "--tlskey", str(certs / "client-key.pem"),
                "-H", f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.APIVersion}}"]
        env = {k: v for k, v in stack.env.items() if k != "DOCKER_HOST"}
        for _ in range(100):
            r = subprocess.run(args, env=env, capture_output=True, timeout=20)
            if r.returncode == 0:
                break
            import time
            time.sleep(0.2)
        assert r.returncode == 0, r.stderr.decode() + (tmp_path / "apid-tls.log").read_text()
        assert r.stdout.decode().strip() == "1.51"
        # the hijacked attach stream works over TLS too
        from helpers import images
        from seed import seed_image

        seed_image(stack.managerd.address, "dy-tls", "dockyard.test/busybox:latest",
                   images.busybox_image(cmd=["sh"]))
        run = args[:-3] + ["run", "--rm", "dockyard.test/busybox:latest", "echo", "tls-hi"]
        r = subprocess.run(run, env=env, capture_output=True, timeout=60)
        assert (r.returncode, r.stdout) == (0, b"tls-hi\n"), r.stderr
        no_cert = subprocess.run(["curl", "-sS", "--cacert", str(certs / "ca.pem"),
                                  f"https://127.0.0.1:{port}/_ping"], capture_output=True,
                                 timeout=20)
        assert no_cert.returncode != 0
    finally:
        proc.terminate()
        proc.wait(10)
