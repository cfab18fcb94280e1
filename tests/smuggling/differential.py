#!/usr/bin/env python3
"""Differential request-smuggling test: the same ambiguous requests through Gatehouse and
through nginx, each in front of a recording upstream.

Usage: differential.py PATH_TO_GATEHOUSE_BINARY

For every request of the corpus (raw bytes on a fresh client connection) the recording upstream
parses what each proxy forwarded with a strict HTTP/1.1 parser (CRLF only, Content-Length or
chunked, never both) and records each request it sees: method, target, body. Then:

  1. a request that nginx refuses (nothing reaches its upstream) must not reach Gatehouse's
     upstream either;
  2. what Gatehouse forwards must frame cleanly (the strict parser reads it whole), and never
     more requests than nginx forwarded, nor a different body: a smuggled second request is
     the classic failure;
  3. Gatehouse answers every request (a status line, or a close after a refusal), never hangs.

Every corpus entry targets its own path (/c<N>...), so an upstream request can be traced to
the entry that produced it even on a pooled connection. Prints one line per entry and the
plain closing line "smuggling: N passed, N failed"; exits 1 on any failure.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ADMIN_TOKEN = "smuggling-test-token"


def corpus():
    """(name, raw bytes) pairs; {p} is replaced by the entry's own path."""
    h = "host: a\r\n"
    return [
        ("plain GET (control)", f"GET {{p}} HTTP/1.1\r\n{h}\r\n"),
        ("plain POST with Content-Length (control)",
         f"POST {{p}} HTTP/1.1\r\n{h}content-length: 5\r\n\r\nhello"),
        ("chunked POST (control)",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("CL.TE: Content-Length and Transfer-Encoding",
         f"POST {{p}} HTTP/1.1\r\n{h}content-length: 6\r\ntransfer-encoding: chunked\r\n\r\n"
         "0\r\n\r\nGET {p}/smuggled HTTP/1.1\r\nhost: a\r\n\r\n"),
        ("TE.CL: Transfer-Encoding then Content-Length",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n"
         "5c\r\nGPOST {p}/smuggled HTTP/1.1\r\n\r\n0\r\n\r\n"),
        ("two different Content-Lengths",
         f"POST {{p}} HTTP/1.1\r\n{h}content-length: 3\r\ncontent-length: 40\r\n\r\nabcGET {{p}}/smuggled HTTP/1.1\r\n\r\n"),
        ("Content-Length list with different values",
         f"POST {{p}} HTTP/1.1\r\n{h}content-length: 3, 40\r\n\r\nabc"),
        ("Content-Length with a sign", f"POST {{p}} HTTP/1.1\r\n{h}content-length: +3\r\n\r\nabc"),
        ("Content-Length in hex", f"POST {{p}} HTTP/1.1\r\n{h}content-length: 0x3\r\n\r\nabc"),
        ("obs-fold in a header", f"GET {{p}} HTTP/1.1\r\n{h}x-folded: a\r\n b\r\n\r\n"),
        ("obs-fold in Transfer-Encoding",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding:\r\n chunked\r\ncontent-length: 3\r\n\r\nabc"),
        ("bare LF line endings", f"GET {{p}} HTTP/1.1\n{h.strip()}\n\n"),
        ("bare LF inside the chunked framing",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked\r\n\r\n3\nabc\n0\n\n"),
        ("Transfer-Encoding with chunked not last",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("Transfer-Encoding xchunked", f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("Transfer-Encoding twice",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked\r\ntransfer-encoding: identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("space before the colon",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding : chunked\r\ncontent-length: 3\r\n\r\nabc"),
        ("Transfer-Encoding on HTTP/1.0",
         f"POST {{p}} HTTP/1.0\r\n{h}transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("chunk extension with a NUL",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked\r\n\r\n3;x=\x00\r\nabc\r\n0\r\n\r\n"),
        ("chunk extension with a bare quote",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked\r\n\r\n3;x=\"\r\nabc\r\n0\r\n\r\n"),
        ("chunk size with 0x", f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n"),
        ("chunk size overflowing 64 bits",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked\r\n\r\n10000000000000003\r\nabc\r\n0\r\n\r\n"),
        ("chunk size with trailing space",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n"),
        ("chunk data longer than its size",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n"),
        ("NUL in a header value", f"GET {{p}} HTTP/1.1\r\n{h}x-a: a\x00b\r\n\r\n"),
        ("NUL in a header name", f"GET {{p}} HTTP/1.1\r\n{h}x\x00a: b\r\n\r\n"),
        ("space inside a header name", f"GET {{p}} HTTP/1.1\r\n{h}x a: b\r\n\r\n"),
        ("CR alone in a header value", f"GET {{p}} HTTP/1.1\r\n{h}x-a: a\rb\r\n\r\n"),
        ("two Host fields", f"GET {{p}} HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n"),
        ("no Host on HTTP/1.1", f"GET {{p}} HTTP/1.1\r\n\r\n"),
        ("request line with two spaces", f"GET  {{p}} HTTP/1.1\r\n{h}\r\n"),
        ("fragment in the target", f"GET {{p}}#frag HTTP/1.1\r\n{h}\r\n"),
        ("pipelined requests (control)",
         f"GET {{p}} HTTP/1.1\r\n{h}\r\nGET {{p}}/second HTTP/1.1\r\n{h}\r\n"),
        ("GET with a body then a pipelined request",
         f"GET {{p}} HTTP/1.1\r\n{h}content-length: 3\r\n\r\nabcGET {{p}}/second HTTP/1.1\r\n{h}\r\n"),
        ("Expect 100-continue with a body",
         f"POST {{p}} HTTP/1.1\r\n{h}expect: 100-continue\r\ncontent-length: 3\r\n\r\nabc"),
        ("trailer fields after the last chunk",
         f"POST {{p}} HTTP/1.1\r\n{h}transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n"),
    ]


# ------------------------------------------------------------------ the recording upstream

class Recorder:
    """A keep-alive HTTP/1.1 upstream that records each request it parses strictly."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.requests = []  # (method, target, body)
        self.garbled = []   # raw bytes the strict parser refused
        self.cut = []       # a request cut short by the proxy closing the connection
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        conn.settimeout(30)
        try:
            while True:
                parsed = strict_parse(buf)
                if parsed == "incomplete":
                    data = conn.recv(65536)
                    if not data:
                        if buf:
                            with self.lock:
                                self.cut.append(buf)
                        return
                    buf += data
                    continue
                if parsed is None:
                    with self.lock:
                        self.garbled.append(buf)
                    return
                (method, target, body, close), buf = parsed
                with self.lock:
                    self.requests.append((method, target, body))
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                if close:
                    return
        except OSError:
            return
        finally:
            conn.close()

    def take(self):
        with self.lock:
            reqs, garbled, cut = self.requests, self.garbled, self.cut
            self.requests, self.garbled, self.cut = [], [], []
        return reqs, garbled, cut


def strict_parse(buf):
    """One request from the start of buf: ((method, target, body, close), rest), "incomplete",
    or None when it is not strictly valid HTTP/1.1 framing."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return "incomplete" if len(buf) < 1 << 20 else None
    head, rest = buf[:end].decode("latin-1"), buf[end + 4:]
    lines = head.split("\r\n")
    if any("\n" in l or "\r" in l or "\x00" in l for l in lines):
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    fields = []
    for l in lines[1:]:
        if ":" not in l or l[0] in " \t":
            return None
        name, value = l.split(":", 1)
        if not name or name != name.strip() or " " in name:
            return None
        fields.append((name.lower(), value.strip()))
    cls = [v for n, v in fields if n == "content-length"]
    tes = [v for n, v in fields if n == "transfer-encoding"]
    close = any(n == "connection" and "close" in v.lower() for n, v in fields) or parts[2] == "HTTP/1.0"
    if cls and tes:
        return None
    if tes:
        if len(tes) != 1 or tes[0].lower() != "chunked":
            return None
        body = b""
        while True:
            line_end = rest.find(b"\r\n")
            if line_end < 0:
                return "incomplete"
            size_text = rest[:line_end].split(b";", 1)[0]
            if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                return None
            size = int(size_text, 16)
            if size == 0:
                trailer_end = rest.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return "incomplete"
                return (parts[0], parts[1], body, close), rest[trailer_end + 4:]
            chunk_start = line_end + 2
            if len(rest) < chunk_start + size + 2:
                return "incomplete"
            if rest[chunk_start + size:chunk_start + size + 2] != b"\r\n":
                return None
            body += rest[chunk_start:chunk_start + size]
            rest = rest[chunk_start + size + 2:]
    if cls:
        if len(cls) != 1 or not cls[0].isdigit():
            return None
        n = int(cls[0])
        if len(rest) < n:
            return "incomplete"
        return (parts[0], parts[1], rest[:n], close), rest[n:]
    return (parts[0], parts[1], b"", close), rest


# ------------------------------------------------------------------ the two proxies

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_nginx(scratch, port, upstream):
    conf = os.path.join(scratch, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
daemon off;
master_process off;
error_log {scratch}/nginx-error.log;
pid {scratch}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {scratch}/body; proxy_temp_path {scratch}/proxy;
  fastcgi_temp_path {scratch}/fcgi; uwsgi_temp_path {scratch}/uwsgi; scgi_temp_path {scratch}/scgi;
  upstream up {{ server 127.0.0.1:{upstream}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
    }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-p", scratch, "-c", conf], stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def admin(base, method, path, body):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json",
                                          "authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def start_gatehouse(binary, scratch, proxy, upstream):
    admin_port, identity_port = free_port(), free_port()
    env = dict(os.environ, GATEHOUSE_ADMIN_TOKEN=ADMIN_TOKEN, RUST_LOG="error")
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", os.path.join(scratch, "gatehouse"),
         "--proxy-listen", f"127.0.0.1:{proxy}", "--proxy-listen-tls", "off", "--admin-listen", f"127.0.0.1:{admin_port}",
         "--identity-listen", f"127.0.0.1:{identity_port}", "--proxy-workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(admin_port)
    base = f"http://127.0.0.1:{admin_port}"
    admin(base, "POST", "/services", {"name": "up", "url": f"http://127.0.0.1:{upstream}"})
    admin(base, "POST", "/services/up/routes", {"name": "all", "paths": ["/"]})
    wait_port(proxy)
    return proc


def send(port, raw):
    """Sends raw on a new connection and reads until the proxy closes or stays quiet for a
    second: the status codes that came back, and whether anything (an answer or a close) came
    within 5 s. The client does not half-close: nginx would take that for an abort."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    out = b""
    closed = False
    started = time.time()
    try:
        s.sendall(raw)
        s.settimeout(1.0)
        while time.time() - started < 5:
            try:
                data = s.recv(65536)
            except socket.timeout:
                if out:
                    break
                continue
            if not data:
                closed = True
                break
            out += data
    except OSError:
        closed = True
    finally:
        s.close()
    statuses = [int(l.split(b" ")[1]) for l in out.split(b"\r\n")
                if l.startswith(b"HTTP/1.") and len(l.split(b" ")) > 1 and l.split(b" ")[1].isdigit()]
    return statuses, bool(statuses) or closed


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    if not shutil.which("nginx"):
        print("smuggling: nginx is not installed (apt-get install nginx)")
        return 2
    scratch = tempfile.mkdtemp(prefix="gatehouse-smuggling-")
    up_nginx, up_gh = Recorder(), Recorder()
    nginx_port, gh_port = free_port(), free_port()
    procs = [start_nginx(scratch, nginx_port, up_nginx.port),
             start_gatehouse(binary, scratch, gh_port, up_gh.port)]
    passed = failed = 0
    try:
        for i, (name, template) in enumerate(corpus()):
            path = f"/c{i}"
            raw = template.replace("{p}", path).encode("latin-1")
            n_status, _ = send(nginx_port, raw)
            g_status, g_finished = send(gh_port, raw)
            time.sleep(0.15)
            n_reqs, _, _ = up_nginx.take()
            g_reqs, g_garbled, g_cut = up_gh.take()
            mine = lambda reqs: sorted((m, t, b) for m, t, b in reqs if t.startswith(path))
            n_mine, g_mine = mine(n_reqs), mine(g_reqs)
            problems = []
            if not n_mine and g_mine:
                problems.append(f"nginx refused it ({n_status}) but Gatehouse forwarded {g_mine}")
            if g_garbled:
                problems.append(f"Gatehouse sent framing the strict parser refused: {g_garbled!r}")
            if len(g_mine) > len(n_mine) and n_mine:
                problems.append(f"Gatehouse forwarded more requests than nginx: {g_mine} vs {n_mine}")
            if n_mine and g_mine and [b for _, _, b in g_mine] != [b for _, _, b in n_mine[:len(g_mine)]]:
                problems.append(f"bodies differ: {g_mine} vs {n_mine}")
            if g_cut and not any(code >= 400 for code in g_status):
                problems.append("Gatehouse cut a request upstream without refusing it")
            if not g_finished:
                problems.append("Gatehouse neither answered nor closed within 5 s")
            verdict = "ok" if not problems else "FAIL"
            cut_note = " (cut upstream)" if g_cut else ""
            print(f"{verdict:4} {name}: nginx {n_status} forwarded {len(n_mine)}, "
                  f"gatehouse {g_status} forwarded {len(g_mine)}{cut_note}")
            for p in problems:
                print(f"     {p}")
            if problems:
                failed += 1
            else:
                passed += 1
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"smuggling: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
