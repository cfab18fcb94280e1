#!/usr/bin/env python3
"""Writes the hand-made seed corpora under fuzz/corpus/<target>/ (the files named seed-*).

Each target's input format (control bytes, then the message) is in the `//!` comment of its
file in fuzz_targets/. The JWT seeds that need signatures come from tools/jwt-seeds.sh.
Re-running rewrites the seed-* files and leaves what libFuzzer added to the corpora alone.
Run from anywhere: python3 fuzz/tools/seeds.py
"""

import json
import pathlib
import re

FUZZ = pathlib.Path(__file__).resolve().parent.parent
CORPUS = FUZZ / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


# h1_request: 9 control bytes. Byte 0 picks the head limit (3 = 64 KiB, the proxy's), bytes
# 1-4 two cut points in the stream (little-endian u16 each), 5-8 two in the body.
def h1_control(n, limit=3, cuts=(5, 40), body_cuts=(3, 9)):
    out = bytes([limit])
    for c in cuts + body_cuts:
        out += c.to_bytes(2, "little")
    return out + b"\x00" * (n - len(out))


REQUESTS = {
    "get": b"GET /anything?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    "post-length": b"POST /a/b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "chunked": b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;a=b;c=\"d;e\"\r\nhello\r\n4 ; f = g\r\n abc\r\n0\r\nExpires: never\r\nX-Sum:\t1 2\r\n\r\n"
    b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n",
    "chunked-bad-ext": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;a=\"x\r\nhello\r\n0\r\n\r\n",
    "cl-and-te": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nG",
    "te-not-last": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te-gzip-chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
    b"Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "te-http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "duplicate-cl": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\ncontent-length: 05\r\n\r\nhello",
    "conflicting-cl": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
    "bare-lf": b"GET /lf HTTP/1.1\nHost: x\nX-A: 1\n\n",
    "bare-lf-chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    "nul-in-header": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "absolute-form": b"GET http://example.com:8080/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "options-star": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "leading-crlf": b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "obs-text": b"GET /caf%C3%A9 HTTP/1.1\r\nHost: x\r\nX-Text: caf\xc3\xa9 \t\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "huge-chunk": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"ffffffffffffffff\r\nabc",
    "chunk-overflow": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"10000000000000000\r\n",
}
for name, req in REQUESTS.items():
    write("h1_request", name, h1_control(9) + req)
write("h1_request", "small-limit", h1_control(9, limit=0) + REQUESTS["get"])

RESPONSES = {
    "length": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nok",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n"
    b"3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    "hop-by-hop": b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: x\r\nConnection: keep-alive\r\n"
    b"Keep-Alive: timeout=5\r\nTrailer: a\r\nUpgrade: h2c\r\nTE: trailers\r\nProxy-Connection: x\r\n"
    b"Proxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n",
    "connection-names": b"HTTP/1.1 200 OK\r\nConnection: X-Secret, close\r\nX-Secret: 1\r\n\r\n",
    "via": b"HTTP/1.1 200 OK\r\nVia: 1.1 cache\r\nContent-Length: 0\r\n\r\n",
    "http10-keep-alive": b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx",
    "no-content": b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
    "not-modified": b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    "continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "close-delimited": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nbytes until close",
    "bad-length": b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
    "list-length": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\ncontent-length: 05\r\n\r\nhello",
    "bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\n\r\n",
    "no-reason": b"HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n",
}
for name, resp in RESPONSES.items():
    write("h1_response", name, h1_control(10)[:1] + b"\x00" + h1_control(10)[1:9] + resp)
write("h1_response", "head-method", b"\x03\x01" + h1_control(10)[1:9] + RESPONSES["length"])

# router_path: 2 control bytes (where to cut the route's prefix, which service path).
PATHS = [
    "/a/./b/../c", "/a/b/..", "/..", "/../a", "/..a/.b/c.", "//a///b", "/a//../b",
    "/%7e", "/%41", "/a%2fb", "/%20x", "/caf%c3%a9", "/a/%2e%2E/b", "/%2e%2e/%2E%2e/etc",
    "/caf\u00e9", "/a b", "/{x}", "/!$&'()*+,;=:@[]", "/%zz", "/a%4", "/a%", "/a%00b",
    "/foo.x", "/fo./x", "/fo../x", "/api/v2/users", "/a/.%2e/b", "/a%2F..%2Fb", "relative",
]
for i, p in enumerate(PATHS):
    write("router_path", f"{i:02}", bytes([3 + i, i]) + p.encode())

# claim_template: templates from crates/claim-template's tests, and a few that push the
# limits.
tests = (FUZZ.parent / "crates/claim-template/src/tests.rs").read_text()
literals = re.findall(r'"((?:[^"\\]|\\.)*)"', tests)


def unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        n = s[i + 1]
        if n == "u":
            end = s.index("}", i)
            out.append(chr(int(s[i + 3:end], 16)))
            i = end + 1
            continue
        out.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(n, n))
        i += 2
    return "".join(out)


templates = sorted({unescape(l) for l in literals if "${" in l})
for i, t in enumerate(templates[::6]):
    write("claim_template", f"test-{i:02}", t)
for name, t in {
    "whole-list": "${ .Client.GrantTypes }",
    "labels-default": '${ .Client.Labels.environment | default "production" }',
    "mixed": "${ .AuthServer.Audience }-${ .Client.ID }",
    "repeat-limit": '${ repeat 10000 "abcdefg" }',
    "until-uniq": "${ until 10000 | uniq }",
    "nested-parens": "${ " + "(" * 60 + "1" + ")" * 60 + " }",
    "dict-json": '${ dict "a" (list 1 2) "b" (dict "c" now) | toJson }',
    "dates": '${ now | dateModify "-1h" | date "2006-01-02T15:04:05Z07:00" }',
}.items():
    write("claim_template", name, t)

# jwt: structured inputs (odd control byte): key choice, edit count, edits, claim text.
write("jwt", "signed-eddsa", b"\x01\x00\x00client-1")
write("jwt", "signed-rs256-edited", b"\x01\x01\x02" + b"\x30\x00\x41" + b"\x90\x02\x00" + b"sub")
write("jwt", "garbage", b"\x00eyJhbGciOiJub25lIn0.e30.")

# issuer_form: a control byte (bits 0-1 the case, bit 6 the Basic encoding, bit 7 the media
# type), then a body, a header value or id 0xFF secret.
write("issuer_form", "basic", b"\x00client-1\xffs3cr3t")
write("issuer_form", "basic-with-form-id", b"\x01client-1\xffs3cr%t:+=")
write("issuer_form", "basic-form-encoded", b"\x40client id\xffsecret with space")
write("issuer_form", "authorization", b"\x02Basic Y2xpZW50LTE6czNjcjN0")
write("issuer_form", "authorization-bad", b"\x02basic  Y2xpZW50LTE=")
write("issuer_form", "posted", b"\x03grant_type=client_credentials&client_id=c%201&client_secret=s+3")
write("issuer_form", "repeated", b"\x83client_id=a&client_secret=b&client_id=a")
write("issuer_form", "token", b"\x03token=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln&token_type_hint=access_token")
write("issuer_form", "odd-pairs", b"\x03a=1&&b=&c&d=x%20y+z&e=%C3%BC&f=%zz&=v&g==h&k=%FF")

# admin_entities: JSON bodies, as the seed walkthrough and the Admin API tests send them.
SVC = "5d1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
BODIES = {
    "service-url": {"name": "example-service", "url": "http://httpbin.konghq.com/anything"},
    "service-fields": {"name": "svc", "protocol": "http", "host": "10.0.0.1", "port": 8080,
                       "path": "/a%20b", "retries": 3, "connect_timeout": 1000,
                       "tags": ["a", "b"], "enabled": False},
    "service-ipv6": {"url": "http://[::1]:9000", "tls_verify": True, "tls_verify_depth": 2},
    "route": {"name": "local", "paths": ["/local"], "service": {"id": SVC}},
    "route-full": {"name": "r", "protocols": ["https"], "methods": ["GET", "POST"],
                   "hosts": ["*.example.com", "example.*"], "paths": ["~/api/(?<v>v\\d+)", "/x"],
                   "headers": {"x-a": ["1", "~*b.+"]}, "snis": ["example.com"],
                   "strip_path": False, "regex_priority": 5, "path_handling": "v1",
                   "https_redirect_status_code": 301, "tags": ["t"]},
    "consumer": {"username": "alice", "custom_id": "client-1", "tags": ["gold"]},
    "consumer-nulls": {"username": "bob", "custom_id": None, "tags": None, "id": SVC},
    "invalid": {"name": "bad name", "host": 5, "unknown": 1},
}
for name, body in BODIES.items():
    write("admin_entities", name, json.dumps(body))
write("admin_entities", "long-name", json.dumps({"username": "n" * 513}))
