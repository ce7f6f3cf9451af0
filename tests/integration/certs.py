"""Certificates for the TLS tests, made with the openssl command."""

import os
import subprocess


def run(*args):
    subprocess.run(["openssl"] + list(args), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_ca(d, name):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=%s" % name, "-keyout", key, "-out", crt)
    return key, crt


def make_server(d, name, ca, san="IP:127.0.0.1,DNS:localhost"):
    """A server certificate signed by ca (key, crt), for san."""
    key, csr = os.path.join(d, name + ".key"), os.path.join(d, name + ".csr")
    crt, ext = os.path.join(d, name + ".crt"), os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\n" % san)
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % name,
        "-keyout", key, "-out", csr)
    run("x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0],
        "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", crt)
    return key, crt


def serial(crt):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", crt],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=")[1]
