#!/usr/bin/env python3
"""Idle TLS subscribers against a running hub: RSS growth per connection (docs/tls-memory.md).

Opens N connections to HOST:PORT, one at a time, from 127.0.0.2-5 (as bench/run does, so the
ephemeral ports of one source address do not run out), each subscribing to the Mercure path:

  h1     TLS, ALPN http/1.1, one GET per connection
  h2     TLS, ALPN h2, STREAMS GET streams per connection (HPACK written by hand: literal
         fields, no Huffman, which every HTTP/2 server must accept)
  plain  cleartext HTTP/1.1, one GET per connection (the compact path's reference figure)
  plain-hyper  the same with a `Connection` option the compact path leaves to hyper: what
         hyper's HTTP/1 connection costs an idle subscriber
  tls    TLS handshake (ALPN http/1.1) and no request: rustls' share, as the server holds a
         connection between its handshake and the first request (close to the hub's head
         timeout: keep --wait below it)

Each connection counts once its response head (HTTP/1.1 status line, or an HTTP/2 HEADERS
frame per stream) arrived. After WAIT seconds idle it prints the server's VmRSS (from
/proc/PID/status) before and after, and the growth per connection and per stream, as JSON.

Usage: scripts/tls-idle.py --pid PID --port PORT --mode MODE -n N [--streams S] [--wait S]
"""

import argparse
import json
import socket
import ssl
import struct
import sys
import time

PATH = "/.well-known/mercure?match=idle"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def connect(port, i):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((f"127.0.0.{2 + i % 4}", 0))
    sock.connect(("127.0.0.1", port))
    return sock


def tls_context(alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols([alpn])
    return ctx


def read_until(sock, marker):
    buf = b""
    while marker not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"closed before {marker!r}: {buf[:200]!r}")
        buf += chunk
    return buf


def h1(sock, extra=""):
    sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
    head = read_until(sock, b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:200])


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(index, value):
    """A literal header field without indexing, name from the static table (RFC 7541 6.2.2)."""
    value = value.encode()
    assert index < 15 and len(value) < 127
    return bytes([index, len(value)]) + value


def h2(sock, streams):
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")
    for n in range(streams):
        # :method GET (static 2), :scheme https (static 7), :path, :authority.
        block = b"\x82\x87" + literal(4, PATH) + literal(1, "127.0.0.1")
        # END_HEADERS only: the request has no body, but the stream stays open anyway.
        out += frame(1, 0x4 | 0x1, 1 + 2 * n, block)
    sock.sendall(out)
    buf, answered, acked = b"", set(), False
    while len(answered) < streams:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("closed before the response heads")
        buf += chunk
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            kind, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            buf = buf[9 + length :]
            if kind == 4 and not flags & 1 and not acked:
                sock.sendall(frame(4, 1, 0, b""))
                acked = True
            elif kind == 1:
                answered.add(stream)
            elif kind in (3, 7):
                raise RuntimeError(f"stream reset or GOAWAY (frame type {kind})")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["h1", "h2", "plain", "plain-hyper", "tls"], required=True)
    p.add_argument("-n", type=int, required=True)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--wait", type=float, default=3.0)
    args = p.parse_args()

    ctx = tls_context("h2" if args.mode == "h2" else "http/1.1")
    before = rss_kib(args.pid)
    conns = []
    started = time.monotonic()
    for i in range(args.n):
        sock = connect(args.port, i)
        if not args.mode.startswith("plain"):
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        if args.mode == "h2":
            h2(sock, args.streams)
        elif args.mode == "plain-hyper":
            h1(sock, "Connection: keep-alive, x-idle\r\n")
        elif args.mode != "tls":
            h1(sock)
        conns.append(sock)
    ramp = time.monotonic() - started
    time.sleep(args.wait)
    after = rss_kib(args.pid)
    grown = after - before
    streams = args.n * (args.streams if args.mode == "h2" else 1)
    print(
        json.dumps(
            {
                "mode": args.mode,
                "connections": args.n,
                "streams": streams,
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_connection": round(grown / args.n, 2),
                "kib_per_stream": round(grown / streams, 2),
                "ramp_s": round(ramp, 2),
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
