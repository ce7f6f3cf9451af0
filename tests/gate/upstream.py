"""A small real upstream for the gate's tests: HTTP/1.1 with keep-alive,
streamed bodies both ways (Content-Length or chunked), a slow route, and a
WebSocket echo, on asyncio streams.

    python3 upstream.py [PORT]     logs "msg=listening listener=upstream addr=..."

Routes:
    GET  /                  a small HTML page (the app, for the browser test)
    ANY  /echo              JSON: method, path (raw target), headers, body size
    GET  /download?size=N[&chunked=1]   N bytes of pattern(), streamed
    ANY  /upload            JSON: size and sha256 of the body, and whether chunked
    GET  /slow?ms=N         answers after N ms
    GET  /conns             JSON: connections accepted so far
    GET  /ws                WebSocket echo (text and binary)
"""

import asyncio
import base64
import hashlib
import json
import random
import sys
from urllib.parse import parse_qs, urlsplit

BLOCK = random.Random(1234).randbytes(1 << 20)
APP_PAGE = (b"<!doctype html><html><head><title>The App</title></head>"
            b"<body><h1 id=\"app\">The app is here</h1></body></html>")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
connections = 0


def pattern(size):
    """The bytes /download sends: BLOCK repeated, cut at size."""
    full, rest = divmod(size, len(BLOCK))
    for _ in range(full):
        yield BLOCK
    if rest:
        yield BLOCK[:rest]


async def read_head(reader):
    line = await reader.readline()
    if not line:
        return None
    method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers = []
    while True:
        h = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not h:
            break
        name, _, value = h.partition(":")
        headers.append((name.strip(), value.strip()))
    return method, target, version, headers


def header(headers, name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


async def body_chunks(reader, headers):
    """The request body, as it arrives."""
    if (header(headers, "Transfer-Encoding") or "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return
            left = size
            while left:
                data = await reader.read(min(left, 1 << 20))
                if not data:
                    raise ConnectionError("short chunk")
                left -= len(data)
                yield data
            await reader.readline()
    else:
        left = int(header(headers, "Content-Length") or 0)
        while left:
            data = await reader.read(min(left, 1 << 20))
            if not data:
                raise ConnectionError("short body")
            left -= len(data)
            yield data


async def respond(writer, status, body, ctype="application/json", extra=()):
    head = ["HTTP/1.1 %d X" % status, "Content-Type: " + ctype,
            "Content-Length: %d" % len(body), "X-Upstream: yes",
            "Connection: keep-alive, X-Hop", "X-Hop: must-not-pass",
            "Keep-Alive: timeout=30"]
    head += ["%s: %s" % kv for kv in extra]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()


async def download(writer, q):
    size = int(q.get("size", ["0"])[0])
    chunked = q.get("chunked", ["0"])[0] == "1"
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    head += ("Transfer-Encoding: chunked\r\n" if chunked
             else "Content-Length: %d\r\n" % size)
    writer.write((head + "\r\n").encode())
    for block in pattern(size):
        if chunked:
            writer.write(b"%x\r\n" % len(block) + block + b"\r\n")
        else:
            writer.write(block)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


async def websocket(reader, writer, headers):
    key = header(headers, "Sec-WebSocket-Key")
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                 b"\r\n\r\n")
    await writer.drain()
    while True:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8), "big")
        mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(
            await reader.readexactly(n)))
        opcode = b0 & 0x0F
        if opcode == 9:  # ping: pong
            b0, opcode = 0x8A, 10
        if n < 126:
            frame = bytes([b0, n])
        elif n < 65536:
            frame = bytes([b0, 126]) + n.to_bytes(2, "big")
        else:
            frame = bytes([b0, 127]) + n.to_bytes(8, "big")
        writer.write(frame + data)
        await writer.drain()
        if opcode == 8:
            return


async def route(reader, writer, method, target, headers):
    url = urlsplit(target)
    q = parse_qs(url.query)
    if url.path == "/ws" and header(headers, "Upgrade"):
        await websocket(reader, writer, headers)
        return False
    size, digest = 0, hashlib.sha256()
    async for data in body_chunks(reader, headers):
        size += len(data)
        digest.update(data)
    if url.path == "/":
        await respond(writer, 200, APP_PAGE, "text/html")
    elif url.path == "/download":
        await download(writer, q)
    elif url.path == "/upload":
        chunked = (header(headers, "Transfer-Encoding") or "") == "chunked"
        await respond(writer, 200, json.dumps({
            "size": size, "sha256": digest.hexdigest(),
            "chunked": chunked}).encode())
    elif url.path == "/slow":
        print("msg=slow_started target=%s" % target, file=sys.stderr,
              flush=True)
        await asyncio.sleep(int(q.get("ms", ["1000"])[0]) / 1000)
        await respond(writer, 200, b"{\"slow\":true}")
    elif url.path == "/conns":
        await respond(writer, 200, json.dumps({"connections": connections}).encode())
    else:
        await respond(writer, 200, json.dumps({
            "method": method, "target": target, "headers": headers,
            "size": size}).encode(), extra=[("Set-Cookie", "a=1"),
                                            ("Set-Cookie", "b=2")])
    return True


async def serve(reader, writer):
    global connections
    connections += 1
    try:
        while True:
            head = await read_head(reader)
            if head is None:
                break
            method, target, version, headers = head
            if not await route(reader, writer, method, target, headers):
                break
            if (header(headers, "Connection") or "").lower() == "close":
                break
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = await asyncio.start_server(serve, "127.0.0.1", port,
                                        limit=1 << 20)
    addr = server.sockets[0].getsockname()
    print("msg=listening listener=upstream addr=%s:%d" % addr,
          file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
