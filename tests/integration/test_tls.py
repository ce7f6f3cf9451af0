"""TLS on both listeners from the same PEM files: https for the API, wss for
agents. Clients verify the server against a CA file, hostname/IP included;
an untrusted certificate is refused; certificates reload on SIGHUP."""

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess

import pytest
import websockets

from certs import make_ca, make_server, serial
from harness import BIN, Discoveryd, Sidecar, WAIT, ws_run


@pytest.fixture
def pki(tmp_path):
    d = str(tmp_path)
    ca = make_ca(d, "ca")
    rogue = make_ca(d, "rogue")
    server = make_server(d, "server", ca)
    return {"dir": d, "ca": ca, "rogue": rogue, "server": server}


def tls_daemon(tmp_path, pki, **kw):
    key, crt = pki["server"]
    return Discoveryd(tmp_path, tls={"cert": crt, "key": key,
                                     "ca": pki["ca"][1]}, **kw)


def curl(url, *args):
    return subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                           "%{http_code}", "-m", "10"] + list(args) + [url],
                          capture_output=True, text=True)


def peer_serial(addr, ca):
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection((host, int(port)), WAIT) as s:
        with ctx.wrap_socket(s, server_hostname=host) as t:
            der = t.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout",
                          "-serial"], input=der, capture_output=True,
                         check=True).stdout.decode()
    return out.strip().split("=")[1]


def test_https_api_verifies(tmp_path, pki):
    d = tls_daemon(tmp_path, pki)
    try:
        assert d.base.startswith("https://")
        assert d.call("GET", "/healthz")[0] == 200
        url = d.base + "/healthz"
        assert curl(url, "--cacert", pki["ca"][1]).stdout == "200"
        assert curl(url).returncode == 60                   # untrusted
        assert curl(url, "--cacert", pki["rogue"][1]).returncode == 60
        plain = "http://" + d.http_addr + "/healthz"
        assert curl(plain).stdout != "200"
    finally:
        assert d.stop() == 0


def test_wss_agents(tmp_path, pki):
    d = tls_daemon(tmp_path, pki)

    async def link(cafile):
        ctx = ssl.create_default_context(cafile=cafile)
        async with websockets.connect(d.ws_url, ssl=ctx,
                                      subprotocols=["discovery.v1"]) as ws:
            await ws.send(json.dumps({"type": "hello", "service": "web",
                                      "instance": "w"}))
            return json.loads(await ws.recv())["type"]

    try:
        assert d.ws_url.startswith("wss://")
        assert ws_run(link(pki["ca"][1])) == "welcome"
        with pytest.raises(ssl.SSLCertVerificationError):
            ws_run(link(pki["rogue"][1]))
    finally:
        assert d.stop() == 0


def test_libagent_verifies_ca_and_address(tmp_path, pki):
    d = tls_daemon(tmp_path, pki)
    # A certificate for another name than the address agents dial.
    other = make_server(pki["dir"], "other", pki["ca"], san="DNS:elsewhere")
    good = Sidecar(tmp_path, d.ws_url, "web", "good",
                   extra="ca_file: %s\n" % pki["ca"][1])
    rogue = Sidecar(tmp_path, d.ws_url, "web", "rogue",
                    extra="ca_file: %s\n" % pki["rogue"][1])
    try:
        good.wait_line(r"msg=linked")
        rogue.wait_line(r"msg=connect_failed")
        assert rogue.count(r"msg=linked") == 0
    finally:
        good.stop()
        rogue.stop()
        assert d.stop() == 0
    # The same daemon with a certificate that does not name 127.0.0.1.
    d = Discoveryd(tmp_path, tls={"cert": other[1], "key": other[0],
                                  "ca": pki["ca"][1]})
    wrong = Sidecar(tmp_path, d.ws_url, "web", "wrong",
                    extra="ca_file: %s\n" % pki["ca"][1])
    try:
        wrong.wait_line(r"msg=connect_failed")
        assert wrong.count(r"msg=linked") == 0
        assert curl(d.base + "/healthz", "--cacert",
                    pki["ca"][1]).returncode == 60
    finally:
        wrong.stop()
        assert d.stop() == 0


def test_certificates_reload_on_sighup(tmp_path, pki):
    d = tls_daemon(tmp_path, pki)
    try:
        first = serial(pki["server"][1])
        assert peer_serial(d.http_addr, pki["ca"][1]) == first
        assert peer_serial(d.agents_addr, pki["ca"][1]) == first
        fresh = make_server(pki["dir"], "fresh", pki["ca"])
        shutil.copy(fresh[0], pki["server"][0])
        shutil.copy(fresh[1], pki["server"][1])
        mark = d.mark()
        d.kill(1)
        d.wait_line(r"msg=reloaded", start=mark)
        second = serial(fresh[1])
        assert second != first
        assert peer_serial(d.http_addr, pki["ca"][1]) == second, d.text()
        assert peer_serial(d.agents_addr, pki["ca"][1]) == second
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        assert d.stop() == 0


def test_bad_tls_config(tmp_path, pki):
    from test_config import check
    rc, out, path = check(tmp_path, "tls:\n  cert: /nonexistent.crt\n"
                          "  key: /nonexistent.key\n")
    assert rc != 0 and "tls.cert" in out
    rc, out, path = check(tmp_path, "tls:\n  cert: %s\n" % pki["server"][1])
    assert rc != 0 and "key" in out


def test_discoveryctl_verifies(tmp_path, pki):
    ctl = os.path.join(BIN, "discoveryctl")
    d = tls_daemon(tmp_path, pki)
    try:
        ok = subprocess.run([ctl, "-s", d.base, "--cacert", pki["ca"][1],
                             "services"], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
        bad = subprocess.run([ctl, "-s", d.base, "--cacert", pki["rogue"][1],
                              "services"], capture_output=True, text=True)
        assert bad.returncode == 3 and "certificate" in bad.stderr.lower()
    finally:
        assert d.stop() == 0


def test_gate_verifies(tmp_path, pki):
    from gate_harness import Gate, Upstream
    d = tls_daemon(tmp_path, pki)
    u = Upstream()
    good = Gate(tmp_path, d, u.url, name="good",
                extra="ca_file: %s\n" % pki["ca"][1])
    bad = Gate(tmp_path, d, u.url, name="bad",
               extra="ca_file: %s\n" % pki["rogue"][1])
    try:
        good.wait_line(r"msg=linked")
        bad.wait_line(r"msg=connect_failed")
        assert bad.count(r"msg=linked") == 0
    finally:
        good.stop()
        bad.stop()
        u.stop()
        assert d.stop() == 0
