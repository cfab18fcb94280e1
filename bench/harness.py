#!/usr/bin/env python3
"""Gatehouse benchmark harness (standard library only).

Started by bench/run, which installs the tools and builds Gatehouse first; see bench/README.md
for the method. This script:

  1. starts every process on 127.0.0.1 with free ports, pinned with taskset:
     the systems under test (Gatehouse, the nginx peer, oidc-provider) on the SUT CPU set,
     wrk and the upstream nginx on the load CPU set;
  2. configures Gatehouse through its admin API and mints the tokens the workloads need;
  3. runs each workload A/B interleaved (Gatehouse, peer; the order alternates per round)
     for N rounds, after one warm-up per side;
  4. runs cache_bound_100k (no peer: the peak RSS of Gatehouse while the introspection cache
     fills with distinct tokens, for cache_size 10,000 and 100,000);
  5. prints one table (and the cache_bound_100k lines under it) and writes
     bench/results/latest.json (the contract: one object per A/B workload) and
     bench/results/latest-full.json (every sample, the machine, versions, set-up times).

Every process it starts runs in its own session and is killed (its whole process group) on
exit, including on errors and SIGINT/SIGTERM.
"""

import argparse
import base64
import datetime
import http.client
import json
import math
import os
import platform
import re
import resource
import shutil
import sqlite3
import uuid
import signal
import ssl
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
LUA_DIR = os.path.join(BENCH_DIR, "lua")
NGINX_DIR = os.path.join(BENCH_DIR, "nginx")
NJS_DIR = os.path.join(BENCH_DIR, "njs")

NJS_MODULE_CANDIDATES = [
    "/usr/lib/nginx/modules/ngx_http_js_module.so",
    "/usr/share/nginx/modules/ngx_http_js_module.so",
]

ADMIN_TOKEN = "bench-admin-token-not-a-secret"

# Workload name -> (what the peer is, target, target description). Targets are from
# shared/spec/performance.md, "Targets" (ratio = Gatehouse / peer; for routes_10k_vs_1 the
# "peer" is Gatehouse with 1 route).
WORKLOADS = [
    ("proxy_no_plugin", "nginx proxy_pass (keepalive)", 1.0, ">=1.0x, p99 <=1.2x"),
    ("proxy_introspection_cached_vs_nginx_plain", "nginx proxy_pass, no auth", 0.9, ">=0.9x"),
    ("proxy_introspection_cached_vs_nginx_njs", "nginx+njs auth_request, proxy_cache 30s", 1.5, ">=1.5x"),
    ("proxy_introspection_miss", "nginx+njs auth_request, no cache", 2.0, ">=2x"),
    ("token_rs256", "oidc-provider JWT RS256", 1.3, ">=1.3x"),
    ("token_es256", "oidc-provider JWT ES256", 3.0, ">=3x"),
    ("token_eddsa", "oidc-provider JWT EdDSA", 3.0, ">=3x"),
    ("introspect_endpoint", "oidc-provider introspection (opaque)", 3.0, ">=3x"),
    ("routes_10k_vs_1", "Gatehouse with 1 route", 0.9, ">=0.9x"),
    ("proxy_tls_keepalive", "nginx ssl proxy_pass, same ECDSA P-256 certificate (keepalive)", 1.0, ">=1.0x"),
    ("proxy_tls_handshakes", "nginx ssl, a new TLS connection per request", 1.0, ">=1.0x"),
    ("proxy_h2", "nginx http2 over TLS (h2load -c10 -m10)", 1.0, ">=1.0x"),
]
BASELINES = ["upstream_direct"]
# Workloads that need the nginx peer, and those that need oidc-provider; only what the selected
# workloads (--only) need is started.
PEER_WORKLOADS = {"proxy_no_plugin", "proxy_introspection_cached_vs_nginx_plain",
                  "proxy_introspection_cached_vs_nginx_njs", "proxy_introspection_miss",
                  "proxy_tls_keepalive", "proxy_tls_handshakes", "proxy_h2"}
# HTTP/2 over TLS is loaded with h2load (wrk speaks HTTP/1.1 only): this many connections,
# each with this many streams in flight.
H2LOAD_CONNECTIONS = 10
H2LOAD_STREAMS = 10
OIDC_WORKLOADS = {"token_rs256", "token_es256", "token_eddsa", "introspect_endpoint"}
# Memory bound of the oauth2-introspection cache: no peer, no target, not in latest.json (only in
# latest-full.json and in its own lines under the table). See cache_bound().
CACHE_WORKLOAD = "cache_bound_100k"


class Fail(Exception):
    """A clear, one-line reason to stop."""


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# Processes


class Procs:
    """Every process this harness started; each in its own process group."""

    def __init__(self, scratch):
        self.scratch = scratch
        self.items = []  # (name, Popen, logpath)

    def start(self, name, argv, cpus=None, env=None):
        logpath = os.path.join(self.scratch, f"{name}.log")
        cmd = (["taskset", "-c", cpus] if cpus else []) + argv
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        out = open(logpath, "wb")
        try:
            p = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                start_new_session=True,
            )
        except FileNotFoundError as e:
            raise Fail(f"cannot start {name}: {e}")
        finally:
            out.close()
        self.items.append((name, p, logpath))
        # For bench/run's safety net (if this harness is killed with SIGKILL): pid = pgid.
        with open(os.path.join(self.scratch, "pids"), "a") as f:
            f.write(f"{p.pid} {name}\n")
        return p, logpath

    def check_alive(self):
        for name, p, logpath in self.items:
            if p.poll() is not None:
                raise Fail(f"{name} exited with status {p.returncode}; last log lines:\n{tail(logpath)}")

    def stop_all(self):
        for name, p, _ in reversed(self.items):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 8
        for name, p, _ in reversed(self.items):
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
            # The group may still hold children (nginx workers) after the leader exited.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.items = []
        try:
            os.remove(os.path.join(self.scratch, "pids"))
        except OSError:
            pass


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("    " + l for l in lines[-n:])
    except OSError:
        return "    (no log)"


def wait_for_line(proc, logpath, pattern, name, timeout=60):
    """Waits until the process's log has a line matching pattern; returns the match."""
    rx = re.compile(pattern)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Fail(f"{name} exited with status {proc.returncode} while starting; log:\n{tail(logpath)}")
        try:
            with open(logpath, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            text = ""
        m = rx.search(text)
        if m:
            return m
        time.sleep(0.05)
    raise Fail(f"{name} did not print /{pattern}/ within {timeout}s; log:\n{tail(logpath)}")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, name, proc=None, logpath=None, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Fail(f"{name} exited with status {proc.returncode}; log:\n{tail(logpath)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise Fail(f"{name} is not listening on 127.0.0.1:{port} after {timeout}s")


# --------------------------------------------------------------------------------------------
# HTTP client (keep-alive, one connection per host:port)


class Http:
    def __init__(self):
        self.conns = {}

    def request(self, method, url, body=None, headers=None, timeout=30):
        u = urllib.parse.urlsplit(url)
        key = (u.scheme, u.hostname, u.port)
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        hdrs = dict(headers or {})
        for attempt in (0, 1):
            conn = self.conns.get(key)
            if conn is None:
                if u.scheme == "https":
                    # The benchmark's certificates are self-signed; what is checked is the answer.
                    conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout,
                                                       context=ssl._create_unverified_context())
                else:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
                self.conns[key] = conn
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    self.conns.pop(key, None)
                return resp.status, data
            except (http.client.HTTPException, OSError):
                conn.close()
                self.conns.pop(key, None)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method, url, obj=None, headers=None, expect=(200, 201)):
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        body = json.dumps(obj).encode() if obj is not None else None
        status, data = self.request(method, url, body=body, headers=hdrs)
        if status not in expect:
            raise Fail(f"{method} {url} -> {status}: {data[:400].decode('utf-8', 'replace')}")
        return json.loads(data) if data else None

    def form(self, url, fields, headers=None, expect=(200,)):
        hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
        hdrs.update(headers or {})
        status, data = self.request("POST", url, body=urllib.parse.urlencode(fields).encode(), headers=hdrs)
        if status not in expect:
            raise Fail(f"POST {url} -> {status}: {data[:400].decode('utf-8', 'replace')}")
        return json.loads(data)

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --------------------------------------------------------------------------------------------
# Gatehouse


class Gatehouse:
    def __init__(self, procs, binary, scratch, name, cpus, threads, extra_args=(), extra_env=None):
        self.name = name
        self.data_dir = data_dir = os.path.join(scratch, f"{name}-data")
        shutil.rmtree(data_dir, ignore_errors=True)
        os.makedirs(data_dir)
        env = {
            "GATEHOUSE_ADMIN_TOKEN": ADMIN_TOKEN,
            "RUST_LOG": os.environ.get("BENCH_GATEHOUSE_LOG", "warn"),
        }
        if threads:
            env["TOKIO_WORKER_THREADS"] = str(threads)
        env.update(extra_env or {})
        argv = [
            binary, "serve",
            "--data-dir", data_dir,
            "--proxy-listen", "127.0.0.1:0", "--proxy-listen-tls", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0",
            "--identity-listen", "127.0.0.1:0",
            *extra_args,
        ]
        self.proc, self.logpath = procs.start(name, argv, cpus=cpus, env=env)
        url = r"(http://127\.0\.0\.1:\d+)"
        self.proxy = wait_for_line(self.proc, self.logpath, r"proxy listening on " + url, name).group(1)
        self.admin = wait_for_line(self.proc, self.logpath, r"admin listening on " + url, name).group(1)
        self.identity = wait_for_line(self.proc, self.logpath, r"identity listening on " + url, name).group(1)
        self.proxy_tls = wait_for_line(self.proc, self.logpath, r"proxy TLS listening on (https://127\.0\.0\.1:\d+)", name).group(1)
        # The default certificate (ECDSA P-256, made on first start): nginx serves the same one.
        self.tls_cert = os.path.join(data_dir, "proxy-default.crt")
        self.tls_key = os.path.join(data_dir, "proxy-default.key")
        self.http = Http()
        deadline = time.time() + 30
        while True:
            try:
                status, data = self.http.request("GET", self.admin + "/status")
                if status == 200 and json.loads(data).get("ready") is True:
                    break
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if time.time() > deadline:
                raise Fail(f"{name}: GET /status never answered ready; log:\n{tail(self.logpath)}")
            if self.proc.poll() is not None:
                raise Fail(f"{name} exited; log:\n{tail(self.logpath)}")
            time.sleep(0.1)

    @property
    def pid(self):
        return self.proc.pid

    def api(self, method, path, obj=None, expect=(200, 201)):
        return self.http.json(method, self.admin + path, obj,
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, expect=expect)

    def auth_server(self, name, alg):
        s = self.api("POST", "/v1/auth-servers",
                     {"name": name, "audience": "http://bench", "signing_algorithm": alg,
                      "description": f"bench {alg}"})
        self.api("POST", f"/v1/auth-servers/{s['id']}/scopes",
                 {"name": "my-scope", "description": "bench scope", "default": False,
                  "include_in_metadata": False, "enabled": True})
        c = self.api("POST", f"/v1/auth-servers/{s['id']}/clients",
                     {"name": f"bench-{alg.lower()}", "grant_types": ["client_credentials"],
                      "allow_all_scopes": True, "access_token_duration": 3600,
                      "id_token_duration": 3600, "response_types": ["id_token", "token"]})
        issuer = s["issuer"]
        return {"id": s["id"], "issuer": issuer, "client_id": c["id"],
                "client_secret": c["client_secret"], "alg": alg,
                "issuer_path": urllib.parse.urlsplit(issuer).path}

    def token(self, server):
        r = self.http.form(server["issuer"] + "/oauth/token",
                           {"grant_type": "client_credentials", "client_id": server["client_id"],
                            "client_secret": server["client_secret"], "scope": "my-scope"})
        return r["access_token"]


def create_routes(gh, n, via_api):
    """Routes r-0 .. r-(n-1), paths /r-<i>, all on service `up`. Returns how they were made.

    Through the admin API every write rebuilds the whole proxy snapshot, so n writes cost
    O(n^2) (10,000 routes took ~10 minutes on the 2-core machine). The default therefore makes
    r-0 through the API, copies its stored row for r-1 .. r-(n-2) straight into the SQLite
    database (one transaction), and makes r-(n-1) through the API: that last write rebuilds the
    snapshot from the database with all n routes, exactly as a restart would. The result is
    checked through the API (count and one route); if anything about the database does not look
    as expected, it falls back to the API for the rest."""
    def via_api_range(lo, hi):
        t = time.time()
        for i in range(lo, hi):
            gh.api("POST", "/routes", {"name": f"r-{i}", "paths": [f"/r-{i}"], "service": {"name": "up"}})
            if (i + 1) % 1000 == 0:
                log(f"  {i + 1} routes created ({time.time() - t:.1f}s)")

    if via_api or n < 3:
        via_api_range(0, n)
        return "POST /routes one by one"
    gh.api("POST", "/routes", {"name": "r-0", "paths": ["/r-0"], "service": {"name": "up"}})
    db = os.path.join(gh.data_dir, "gatehouse.db")
    how = "r-0 and the last via POST /routes, the rest copied from r-0's row into SQLite"
    try:
        con = sqlite3.connect(db, timeout=30)
        cols = [r[1] for r in con.execute("PRAGMA table_info(core_entities)")]
        want = ["control_plane_id", "kind", "id", "endpoint_key", "alt_key", "service_id",
                "route_id", "consumer_id", "created_at", "body"]
        if cols != want:
            raise ValueError(f"core_entities columns are {cols}")
        row = con.execute("SELECT * FROM core_entities WHERE kind = 'routes' AND endpoint_key = 'r-0'").fetchall()
        if len(row) != 1:
            raise ValueError("template route r-0 not found")
        tpl = dict(zip(cols, row[0]))
        body = json.loads(tpl["body"])
        if body.get("name") != "r-0" or body.get("paths") != ["/r-0"] or body.get("id") != tpl["id"]:
            raise ValueError("unexpected route body")
        rows = []
        for i in range(1, n - 1):
            rid = str(uuid.uuid4())
            b = dict(body, id=rid, name=f"r-{i}", paths=[f"/r-{i}"])
            rows.append(tuple(dict(tpl, id=rid, endpoint_key=f"r-{i}",
                                   body=json.dumps(b, separators=(",", ":")))[c] for c in cols))
        with con:
            con.executemany(f"INSERT INTO core_entities ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", rows)
        con.close()
    except (sqlite3.Error, ValueError, KeyError) as e:
        log(f"WARNING: bulk route insert not possible ({e}); creating the routes through the API (slow)")
        via_api_range(1, n)
        return "POST /routes one by one (bulk insert not possible)"
    gh.api("POST", "/routes", {"name": f"r-{n - 1}", "paths": [f"/r-{n - 1}"], "service": {"name": "up"}})
    # Check: the API sees exactly n routes, and a copied one reads back as a proper route.
    count, offset = 0, None
    while True:
        page = gh.api("GET", "/routes?size=1000" + (f"&offset={urllib.parse.quote(offset)}" if offset else ""))
        count += len(page["data"])
        offset = page.get("offset")
        if not offset:
            break
    if count != n:
        raise Fail(f"after the bulk insert the admin API lists {count} routes, want {n}")
    r = gh.api("GET", f"/routes/r-{n // 2}")
    if r.get("paths") != [f"/r-{n // 2}"]:
        raise Fail(f"route r-{n // 2} reads back as {r}")
    return how


def mint_tokens(server, n, path, conns=32):
    """Mints n access tokens of `server` (client_credentials, as Gatehouse.token) and writes them
    to path, one a line. The requests go over `conns` keep-alive connections, one thread each:
    the token endpoint answers once the token is committed to SQLite, and commits are grouped,
    so the rate grows with the requests in flight (4 connections: ~1,450/s here). Fails when a
    request fails or two tokens are equal (each has its own jti). Returns the seconds it took."""
    fields = {"grant_type": "client_credentials", "client_id": server["client_id"],
              "client_secret": server["client_secret"], "scope": "my-scope"}
    url = server["issuer"] + "/oauth/token"
    shares = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    out = [[] for _ in range(conns)]
    errors = []

    def work(i):
        h = Http()
        try:
            for _ in range(shares[i]):
                if errors:
                    return
                out[i].append(h.form(url, fields)["access_token"])
        except (Fail, OSError, http.client.HTTPException, ValueError, KeyError) as e:
            errors.append(e)
        finally:
            h.close()

    t = time.time()
    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(conns)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    took = time.time() - t
    if errors:
        raise Fail(f"minting {n} tokens at {url}: {errors[0]}")
    tokens = [tok for part in out for tok in part]
    if len(set(tokens)) != n:
        raise Fail(f"minting {n} tokens at {url}: got {len(set(tokens))} distinct tokens")
    with open(path, "w") as f:
        for tok in tokens:
            f.write(tok + "\n")
    return took


# --------------------------------------------------------------------------------------------
# Measurement


def run_wrk(args, spec, duration):
    env = dict(os.environ)
    env["BENCH_LUA_DIR"] = LUA_DIR
    env["BENCH_THREADS"] = str(args.threads)
    for k in ("BENCH_HEADER", "BENCH_BODY", "BENCH_TOKEN_FILE", "BENCH_TOKEN_START"):
        env.pop(k, None)
    env.update(spec.get("env", {}))
    cmd = ["taskset", "-c", args.load_cpus, "wrk", f"-t{args.threads}", f"-c{args.connections}",
           f"-d{duration}s", "--latency", "--timeout", "5s",
           "-s", os.path.join(LUA_DIR, spec["script"]), spec["url"]]
    try:
        out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=duration + 60, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise Fail(f"wrk did not finish: {' '.join(cmd)}")
    text = out.stdout.decode("utf-8", "replace")
    m = re.search(r"^BENCH_JSON (\{.*\})$", text, re.M)
    if out.returncode != 0 or not m:
        raise Fail(f"wrk failed (status {out.returncode}) on {spec['url']}:\n{text[-1500:]}")
    r = json.loads(m.group(1))
    rps_text = re.search(r"Requests/sec:\s+([\d.]+)", text)
    res = {
        "rps": r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0,
        "rps_wrk_text": float(rps_text.group(1)) if rps_text else None,
        "p50_ms": r["lat_p50_us"] / 1000.0,
        "p90_ms": r["lat_p90_us"] / 1000.0,
        "p99_ms": r["lat_p99_us"] / 1000.0,
        "max_ms": r["lat_max_us"] / 1000.0,
        "requests": r["requests"],
        "duration_s": r["duration_us"] / 1e6,
        "errors": {k[4:]: v for k, v in r.items() if k.startswith("err_") and v},
    }
    return res


def run_h2load(args, spec, duration):
    """HTTP/2 load with h2load on the load CPUs: requests per second; h2load reports no latency
    percentiles, so none are given."""
    cmd = ["taskset", "-c", args.load_cpus, "h2load", "-D", str(duration),
           "-c", str(H2LOAD_CONNECTIONS), "-m", str(H2LOAD_STREAMS), "-t", str(args.threads), spec["url"]]
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=duration + 60, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise Fail(f"h2load did not finish: {' '.join(cmd)}")
    text = out.stdout.decode("utf-8", "replace")
    fin = re.search(r"^finished in ([\d.]+)s, ([\d.]+) req/s", text, re.M)
    req = re.search(r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", text, re.M)
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    proto = re.search(r"^Application protocol: (\S+)", text, re.M)
    if out.returncode != 0 or not (fin and req and codes):
        raise Fail(f"h2load failed (status {out.returncode}) on {spec['url']}:\n{text[-1500:]}")
    if not proto or proto.group(1) != "h2":
        raise Fail(f"h2load did not negotiate h2 with {spec['url']}:\n{text[-800:]}")
    done = int(req.group(2))
    errors = {"failed": int(req.group(4)), "errored": int(req.group(5)), "timeout": int(req.group(6)),
              "status_4xx": int(codes.group(3)), "status_5xx": int(codes.group(4))}
    return {
        "rps": float(fin.group(2)),
        "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None,
        "requests": done,
        "duration_s": float(fin.group(1)),
        "errors": {k: v for k, v in errors.items() if v},
    }


def rss_reset(pid):
    """Resets the peak RSS (VmHWM) of pid (Linux: write 5 to clear_refs). False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def proc_status_mb(pid, field):
    """A memory field of /proc/<pid>/status ("VmHWM", "VmRSS", ...) in MB; None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_peak_mb(pid):
    """Peak RSS (VmHWM) of pid in MB, since process start or the last rss_reset()."""
    return proc_status_mb(pid, "VmHWM")


def cpu_busy_fraction(seconds=1.0):
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return idle, sum(v)
    i0, t0 = snap()
    time.sleep(seconds)
    i1, t1 = snap()
    return 1.0 - (i1 - i0) / max(1, (t1 - t0))


HZ = os.sysconf("SC_CLK_TCK")


def cpu_list(cpus):
    out = []
    for part in cpus.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    return out


def cpu_snapshot(pgids):
    """Per-CPU /proc/stat counters, the CPU ticks of every process in pgids, and the CPU
    seconds of this harness's waited-for children (wrk)."""
    per_cpu = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = line.split()
                n = [int(x) for x in v[1:]]
                per_cpu[int(v[0][3:])] = {"task": n[0] + n[1] + n[2], "irq": n[5] + n[6],
                                          "idle": n[3] + n[4], "steal": n[7], "total": sum(n[:8])}
    ours = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(")") + 2:].split()
        # rest[0]=state, rest[2]=pgrp, rest[11]=utime, rest[12]=stime
        if int(rest[2]) in pgids:
            ours += int(rest[11]) + int(rest[12])
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"per_cpu": per_cpu, "ours": ours, "children_s": ru.ru_utime + ru.ru_stime, "t": time.time()}


def cpu_report(a, b, sut_cpus, load_cpus):
    """Busy fraction of the SUT and load CPU sets, the CPU (in cores) used by processes that
    are not part of the benchmark (other users of the machine) during the sample, and the CPU
    time the hypervisor took from the VM (steal, in cores, over both sets)."""
    wall = max(1e-6, b["t"] - a["t"])

    def busy(cpus):
        tot = sum(b["per_cpu"][c]["total"] - a["per_cpu"][c]["total"] for c in cpus)
        idle = sum(b["per_cpu"][c]["idle"] - a["per_cpu"][c]["idle"] for c in cpus)
        return 1.0 - idle / max(1, tot)

    def used_s(cpus):
        """CPU seconds the set spent on tasks and interrupts (loopback TCP runs in softirq)."""
        return sum(b["per_cpu"][c][k] - a["per_cpu"][c][k] for c in cpus for k in ("task", "irq")) / HZ

    task_s = sum(b["per_cpu"][c]["task"] - a["per_cpu"][c]["task"] for c in b["per_cpu"]) / HZ
    ours_s = (b["ours"] - a["ours"]) / HZ + (b["children_s"] - a["children_s"])
    return {
        "sut_cpu_busy": round(busy(sut_cpus), 3),
        "load_cpu_busy": round(busy(load_cpus), 3),
        "sut_cpu_s": round(used_s(sut_cpus), 3),
        "load_cpu_s": round(used_s(load_cpus), 3),
        "foreign_cpu_cores": round(max(0.0, task_s - ours_s) / wall, 3),
        "steal_cpu_cores": round(
            sum(b["per_cpu"][c]["steal"] - a["per_cpu"][c]["steal"] for c in b["per_cpu"]) / HZ / wall, 3),
    }


def measure(args, procs, spec, duration):
    procs.check_alive()
    pid = spec.get("rss_pid")
    reset = rss_reset(pid) if pid else False
    pgids = {p.pid for _, p, _ in procs.items}
    before = cpu_snapshot(pgids)
    res = (run_h2load if spec.get("tool") == "h2load" else run_wrk)(args, spec, duration)
    res.update(cpu_report(before, cpu_snapshot(pgids), cpu_list(args.sut_cpus), cpu_list(args.load_cpus)))
    # CPU per request on each set: what a request costs the system under test, whichever core
    # limited the throughput.
    if res["requests"]:
        res["sut_us_per_req"] = round(res["sut_cpu_s"] * 1e6 / res["requests"], 2)
        res["load_us_per_req"] = round(res["load_cpu_s"] * 1e6 / res["requests"], 2)
    if pid:
        res["peak_rss_mb"] = rss_peak_mb(pid)
        res["peak_rss_since"] = "sample start" if reset else "process start"
    procs.check_alive()
    return res


def fill_tokens(args, procs, spec, n_tokens, pid):
    """Runs wrk with rotate_tokens.lua on spec until at least n_tokens requests completed, i.e.
    until every token of the file was sent once (with one wrk thread they go in file order).
    Runs in chunks: a 1 s chunk measures the rate, the next ones are sized from it (+5 %), each
    continuing where the previous stopped (BENCH_TOKEN_START; it backs off by the connection
    count, so that requests cut off at the end of a chunk are sent again). The peak RSS of pid
    is reset once before the first chunk and read after the last one, with VmRSS before and
    after. Returns the totals, the chunks (run_wrk results) and the CPU use over all of them."""
    procs.check_alive()
    reset = rss_reset(pid)
    rss_before = proc_status_mb(pid, "VmRSS")
    pgids = {p.pid for _, p, _ in procs.items}
    before = cpu_snapshot(pgids)
    chunks, sent, seconds = [], 0, 1
    while sent < n_tokens:
        start = max(0, sent - args.connections) // args.threads
        chunk_spec = dict(spec, env=dict(spec["env"], BENCH_TOKEN_START=str(start)))
        res = run_wrk(args, chunk_spec, seconds)
        chunks.append(res)
        sent += res["requests"]
        if res["rps"] <= 0 or len(chunks) > 30:
            raise Fail(f"{spec['url']}: {sent} of {n_tokens} tokens sent after {len(chunks)} wrk runs")
        seconds = max(1, math.ceil((n_tokens - sent) * 1.05 / res["rps"]))
        procs.check_alive()
    res = cpu_report(before, cpu_snapshot(pgids), cpu_list(args.sut_cpus), cpu_list(args.load_cpus))
    duration = sum(c["duration_s"] for c in chunks)
    errors = {}
    for c in chunks:
        for k, v in c["errors"].items():
            errors[k] = errors.get(k, 0) + v
    res.update({
        "requests": sent,
        "duration_s": round(duration, 3),
        "rps": sent / duration if duration else 0.0,
        "p99_ms_max": max(c["p99_ms"] for c in chunks),
        "errors": errors,
        "rss_before_mb": rss_before,
        "peak_rss_mb": rss_peak_mb(pid),
        "rss_after_mb": proc_status_mb(pid, "VmRSS"),
        "peak_rss_since": "fill start" if reset else "process start",
        "chunks": chunks,
    })
    procs.check_alive()
    return res


def cache_bound(args, procs, h, upstream, threads, setup_times):
    """The cache_bound_100k workload: the memory bound of the oauth2-introspection cache.

    A separate Gatehouse ("gatehouse-cache-idp") is the identity server: an EdDSA auth server
    (the cheapest signature) mints args.cache_tokens distinct tokens (1 h lifetime) and answers
    the introspection calls. Then, for cache_size 10,000 and for 100,000, a fresh
    Gatehouse with one route (/cache-small, /cache-large) and the plugin (ttl 3600 s) is sent
    every token once (fill_tokens) and its RSS is read before, at the peak and after. The
    identity server is a process of its own so that its JWT-verification cache (in the same
    process it would hold up to 100,000 verified tokens too) is not counted in the RSS measured.
    Both run on the SUT CPUs. Returns the latest-full.json entry."""
    idp = Gatehouse(procs, args.gatehouse, args.scratch, "gatehouse-cache-idp", args.sut_cpus, threads)
    server = idp.auth_server("bench-cache-eddsa", "EdDSA")
    token_file = os.path.join(args.scratch, "cache-tokens.txt")
    log(f"{CACHE_WORKLOAD}: minting {args.cache_tokens:,} EdDSA tokens at {server['issuer']}")
    mint_s = mint_tokens(server, args.cache_tokens, token_file)
    setup_times["mint_cache_tokens_s"] = round(mint_s, 2)
    setup_times["cache_tokens"] = args.cache_tokens
    log(f"{CACHE_WORKLOAD}: {args.cache_tokens:,} tokens minted in {mint_s:.1f}s "
        f"({args.cache_tokens / max(mint_s, 1e-9):,.0f}/s)")
    plugin = {"introspection_url": server["issuer"] + "/introspect",
              "authorization_value": basic(server["client_id"], server["client_secret"]),
              "consumer_by": "client_id", "ttl": 3600}
    routes = {}
    for label, cache_size in (("small", 10000), ("large", 100000)):
        name, path = f"cache_{label}", f"/cache-{label}"
        gh = Gatehouse(procs, args.gatehouse, args.scratch, f"gatehouse-cache-{label}", args.sut_cpus, threads)
        gh.api("POST", "/services", {"name": "up", "url": upstream + "/"})
        gh.api("POST", "/routes", {"name": "warm", "paths": ["/warm"], "service": {"name": "up"}})
        gh.api("POST", "/routes", {"name": name, "paths": [path], "service": {"name": "up"}})
        config = dict(plugin, cache_size=cache_size)
        stored = gh.api("POST", "/plugins", {"name": "oauth2-introspection", "route": {"name": name},
                                             "config": config})
        spec = {"url": gh.proxy + path, "script": "rotate_tokens.lua", "env": {"BENCH_TOKEN_FILE": token_file}}
        check_spec(h, f"{CACHE_WORKLOAD} ({path})", spec)
        # The connections and buffers of a loaded proxy belong to the baseline, not to the cache:
        # warm up on a route without plugin before reading the RSS before.
        run_wrk(args, {"url": gh.proxy + "/warm", "script": "get.lua"}, args.warmup)
        time.sleep(0.5)
        log(f"{CACHE_WORKLOAD}: {path} (cache_size {stored['config']['cache_size']:,}), "
            f"gatehouse pid {gh.pid}: sending each of the {args.cache_tokens:,} tokens once")
        res = fill_tokens(args, procs, spec, args.cache_tokens, gh.pid)
        res.update({"route": path, "cache_size": stored["config"]["cache_size"],
                    "all_tokens_requested": res["requests"] >= args.cache_tokens})
        err = f" ERRORS {res['errors']}" if res["errors"] else ""
        log(f"  {path:12s} {res['rps']:>8,.0f} rps  {res['requests']:,} requests in {res['duration_s']:.1f}s "
            f"({len(res['chunks'])} wrk runs), rss {res['rss_before_mb']:.1f} -> peak {res['peak_rss_mb']:.1f} "
            f"-> {res['rss_after_mb']:.1f} MB, cpu sut {res['sut_cpu_busy']:.0%} load {res['load_cpu_busy']:.0%} "
            f"foreign {res['foreign_cpu_cores']:.2f} steal {res['steal_cpu_cores']:.2f}{err}")
        routes[name] = res
    return {
        "tokens": args.cache_tokens,
        "token_alg": "EdDSA",
        "token_lifetime_s": 3600,
        "mint_s": round(mint_s, 2),
        "ttl_s": 3600,
        "identity_server": "separate Gatehouse process (gatehouse-cache-idp), on the SUT CPUs",
        "routes": routes,
        "failed_requests": sum(sum(r["errors"].values()) for r in routes.values()),
        "max_foreign_cpu_cores": max(r["foreign_cpu_cores"] for r in routes.values()),
    }


def summarize(samples, key):
    vals = [s[key] for s in samples if s.get(key) is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "all": vals}


# --------------------------------------------------------------------------------------------
# Set-up


def render(template, dest, values):
    with open(template) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise Fail(f"{template}: unreplaced placeholders {sorted(set(left))}")
    with open(dest, "w") as f:
        f.write(text)


def start_nginx(procs, scratch, name, conf_template, values, cpus, ports):
    prefix = os.path.join(scratch, "nginx")
    for d in ("tmp/client_body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi", "cache/tokens", "logs"):
        os.makedirs(os.path.join(prefix, d), exist_ok=True)
    conf = os.path.join(prefix, f"{name}.conf")
    render(conf_template, conf, dict(values, PREFIX=prefix))
    test = subprocess.run(["nginx", "-t", "-q", "-p", prefix, "-c", conf, "-e", os.path.join(prefix, f"{name}-error.log")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if test.returncode != 0:
        raise Fail(f"nginx -t rejected {conf}:\n{test.stdout.decode('utf-8', 'replace')}")
    p, logpath = procs.start(name, ["nginx", "-p", prefix, "-c", conf, "-e", os.path.join(prefix, f"{name}-error.log")], cpus=cpus)
    for port in ports:
        wait_port(port, name, p, logpath)
    return p


def check_get(h, url, header=None, want=200, what=""):
    hdrs = {}
    if header:
        k, v = header.split(":", 1)
        hdrs[k] = v.strip()
    status, data = h.request("GET", url, headers=hdrs)
    if status != want:
        raise Fail(f"sanity check {what or url}: GET {url} -> {status} (want {want}): {data[:300]!r}")


def check_spec(h, name, spec):
    """One request of the workload before loading it: it must succeed."""
    env = spec.get("env", {})
    header = env.get("BENCH_HEADER")
    if spec["script"] == "post_form.lua":
        hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
        if header:
            k, v = header.split(":", 1)
            hdrs[k] = v.strip()
        status, data = h.request("POST", spec["url"], body=env["BENCH_BODY"].encode(), headers=hdrs)
        if status != 200:
            raise Fail(f"sanity check {name}: POST {spec['url']} -> {status}: {data[:300]!r}")
        body = json.loads(data)
        if "expect_json" in spec:
            k, v = spec["expect_json"]
            if body.get(k) != v and not (v == "*" and body.get(k)):
                raise Fail(f"sanity check {name}: answer has {k}={body.get(k)!r}, want {v!r}: {data[:300]!r}")
    elif spec["script"] == "rotate_tokens.lua":
        with open(env["BENCH_TOKEN_FILE"]) as f:
            tok = f.readline().strip()
        check_get(h, spec["url"], f"Authorization: Bearer {tok}", what=name)
        check_get(h, spec["url"], "Authorization: Bearer not-a-token", want=spec.get("bad_token_status", 401), what=name + " (bad token)")
    else:
        check_get(h, spec["url"], header, what=name)


def machine_info():
    info = {"kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            models = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        info["cpu_model"] = models[0] if models else None
    except OSError:
        pass
    info["cpus_online"] = os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        with open("/etc/os-release") as f:
            for l in f:
                if l.startswith("PRETTY_NAME="):
                    info["os"] = l.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return info


def versions(oidc_dir):
    def cmd(argv):
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
            return r.stdout.decode("utf-8", "replace").strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    v = {
        "nginx": cmd(["nginx", "-v"]),
        "njs": cmd(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-http-js"]),
        "wrk": cmd(["wrk", "-v"]),
        "node": cmd(["node", "--version"]),
    }
    try:
        with open(os.path.join(oidc_dir, "node_modules", "oidc-provider", "package.json")) as f:
            v["oidc_provider"] = json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        v["oidc_provider"] = None
    v["gatehouse_commit"] = cmd(["git", "-C", REPO_DIR, "rev-parse", "HEAD"])
    try:
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", REPO_DIR, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=20)
        v["gatehouse_worktree_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    return v


# --------------------------------------------------------------------------------------------
# Main


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gatehouse", required=True, help="the gatehouse release binary")
    ap.add_argument("--scratch", required=True, help="scratch directory (data dirs, nginx prefix, logs)")
    ap.add_argument("--oidc-dir", required=True, help="directory with server.js and node_modules of oidc-provider")
    ap.add_argument("--results", default=os.path.join(BENCH_DIR, "results"))
    ap.add_argument("--quick", action="store_true", help="short pass: 3 rounds of 3 s, small token set")
    ap.add_argument("--rounds", type=int, help="rounds per workload (6; 3 with --quick)")
    ap.add_argument("--duration", type=int, help="seconds per measurement (5; 3 with --quick)")
    ap.add_argument("--warmup", type=int, help="seconds of warm-up per side before round 1")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--sut-cpus", default="0", help="taskset CPU list for Gatehouse and the peers")
    ap.add_argument("--load-cpus", default="1", help="taskset CPU list for wrk")
    ap.add_argument("--upstream-cpus", help="taskset CPU list for the upstream nginx (default: --load-cpus)")
    ap.add_argument("--routes", type=int, default=10000)
    ap.add_argument("--routes-via-api", action="store_true",
                    help="create every route with POST /routes (slow: each write rebuilds the snapshot)")
    ap.add_argument("--miss-tokens", type=int, help="distinct tokens for the miss workload")
    ap.add_argument("--cache-tokens", type=int,
                    help=f"distinct tokens for {CACHE_WORKLOAD} (default 100,000; 20,000 with --quick)")
    ap.add_argument("--only", help="comma-separated workload names (default: all)")
    a = ap.parse_args()
    # A full pass: six rounds of 5 s, not three of 10 s (the same time under load). Rounds
    # spread by 10-20 % on a shared 2-core VM and p99 with them; a median over six rounds,
    # three in each order, holds against one disturbed round where a median of three does not.
    if a.rounds is None:
        a.rounds = 3 if a.quick else 6
    if a.duration is None:
        a.duration = 3 if a.quick else 5
    if a.warmup is None:
        a.warmup = 1 if a.quick else 3
    if a.miss_tokens is None:
        a.miss_tokens = 500 if a.quick else 2000
    if a.cache_tokens is None:
        a.cache_tokens = 20000 if a.quick else 100000
    if a.cache_tokens < 1:
        raise SystemExit("--cache-tokens must be >= 1")
    if a.upstream_cpus is None:
        a.upstream_cpus = a.load_cpus
    if a.rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    return a


def cpu_count_of(cpus):
    n = 0
    for part in cpus.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            n += int(hi) - int(lo) + 1
        else:
            n += 1
    return n


def fmt_rate(s):
    if s is None:
        return "n/a"
    return f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"


def fmt_cost(v):
    """SUT CPU microseconds per request, Gatehouse / peer (medians), and their ratio."""
    g, p = v.get("gatehouse_sut_us_per_req"), v.get("peer_sut_us_per_req")
    if not g or not p:
        return "-"
    return f"{g['median']:.1f}/{p['median']:.1f} ({v['sut_cost_ratio']:.2f}x)"


def fmt_ms(s):
    if s is None:
        return "n/a"
    return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def main():
    args = parse_args()
    only = set(args.only.split(",")) if args.only else None
    known = {w[0] for w in WORKLOADS} | set(BASELINES) | {CACHE_WORKLOAD}
    if only and not only <= known:
        raise Fail(f"unknown workload(s): {sorted(only - known)}; known: {sorted(known)}")

    def wanted(name):
        return only is None or name in only

    # Only what the selected workloads need is started: the main Gatehouse for the peer and
    # oidc-provider workloads, the nginx peer, oidc-provider.
    need_peer = any(wanted(n) for n in PEER_WORKLOADS)
    need_op = any(wanted(n) for n in OIDC_WORKLOADS)
    need_gh = need_peer or need_op
    need_h2load = wanted("proxy_h2")
    for tool in ("nginx", "wrk", "taskset") + (("node",) if need_op else ()) + (("h2load",) if need_h2load else ()):
        if shutil.which(tool) is None:
            raise Fail(f"required tool not found on PATH: {tool} (bench/run installs it)")
    if not os.access(args.gatehouse, os.X_OK):
        raise Fail(f"gatehouse binary not found or not executable: {args.gatehouse}")
    njs_module = next((p for p in NJS_MODULE_CANDIDATES if os.path.exists(p)), None)
    if njs_module is None and need_peer:
        raise Fail("the njs module (ngx_http_js_module.so) is missing: apt-get install libnginx-mod-http-js")
    ncpu = os.cpu_count() or 1
    for cpus in (args.sut_cpus, args.load_cpus, args.upstream_cpus):
        for part in re.split(r"[,-]", cpus):
            if not part.isdigit() or int(part) >= ncpu:
                raise Fail(f"CPU list {cpus!r} does not fit this machine ({ncpu} CPUs)")

    os.makedirs(args.scratch, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)

    started = time.time()
    meta = {
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": machine_info(),
        "versions": versions(args.oidc_dir),
        "method": {
            "rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
            "wrk": f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency",
            "sut_cpus": args.sut_cpus, "load_cpus": args.load_cpus, "upstream_cpus": args.upstream_cpus,
            "gatehouse_tokio_worker_threads": cpu_count_of(args.sut_cpus),
            "order": "A/B interleaved; round 1 Gatehouse first, round 2 peer first, ...",
            "aggregate": "median of rounds; spread = min-max of rounds; ratio = median/median",
        },
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
    }
    meta["cpu_busy_before_start"] = round(cpu_busy_fraction(1.0), 3)
    if meta["cpu_busy_before_start"] > 0.15:
        log(f"WARNING: the machine is {meta['cpu_busy_before_start']:.0%} busy before the benchmark "
            f"starts (other processes); numbers will be noisy")

    procs = Procs(args.scratch)
    setup_times = {}

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    results = {}
    try:
        h = Http()
        threads = cpu_count_of(args.sut_cpus)

        # --- upstream
        t0 = time.time()
        up_port = free_port()
        start_nginx(procs, args.scratch, "upstream", os.path.join(NGINX_DIR, "upstream.conf"),
                    {"UPSTREAM_PORT": up_port}, args.upstream_cpus, [up_port])
        upstream = f"http://127.0.0.1:{up_port}"
        check_get(h, upstream + "/", what="upstream")

        # --- Gatehouse (main instance): proxy routes + identity servers
        gh = None
        if need_gh:
            gh = Gatehouse(procs, args.gatehouse, args.scratch, "gatehouse", args.sut_cpus, threads)
            log(f"gatehouse pid {gh.pid}: proxy {gh.proxy}, admin {gh.admin}, identity {gh.identity}")
            servers = {alg: gh.auth_server(f"bench-{alg.lower()}", alg) for alg in ("RS256", "ES256", "EdDSA")}
            rs = servers["RS256"]
            introspect_auth = basic(rs["client_id"], rs["client_secret"])
            gh.api("POST", "/services", {"name": "up", "url": upstream + "/"})
            gh.api("POST", "/routes", {"name": "bench", "paths": ["/bench"], "service": {"name": "up"}})
            gh.api("POST", "/routes", {"name": "auth", "paths": ["/auth"], "service": {"name": "up"}})
            gh.api("POST", "/routes", {"name": "miss", "paths": ["/miss"], "service": {"name": "up"}})
            plugin_base = {"introspection_url": rs["issuer"] + "/introspect",
                           "authorization_value": introspect_auth, "consumer_by": "client_id"}
            gh.api("POST", "/plugins", {"name": "oauth2-introspection", "route": {"name": "auth"},
                                        "config": dict(plugin_base, ttl=30)})
            # Every request a miss: a distinct token per request (round-robin over miss_tokens) AND
            # a 1 ms ttl, so a token seen again (after thousands of others) is never a cache hit.
            gh.api("POST", "/plugins", {"name": "oauth2-introspection", "route": {"name": "miss"},
                                        "config": dict(plugin_base, ttl=0.001)})
            cached_token = gh.token(rs)
            t_tok = time.time()
            token_file = os.path.join(args.scratch, "miss-tokens.txt")
            if wanted("proxy_introspection_miss"):
                with open(token_file, "w") as f:
                    for _ in range(args.miss_tokens):
                        f.write(gh.token(rs) + "\n")
            setup_times["mint_miss_tokens_s"] = round(time.time() - t_tok, 2)
            setup_times["miss_tokens"] = args.miss_tokens
            introspect_jwt = gh.token(rs)

        # --- nginx peer (plain proxy + njs introspection), pinned like Gatehouse
        if need_peer:
            plain_port, njs_port, tls_port = free_port(), free_port(), free_port()
            identity_port = urllib.parse.urlsplit(gh.identity).port
            start_nginx(procs, args.scratch, "peer", os.path.join(NGINX_DIR, "peer.conf"), {
                "UPSTREAM_PORT": up_port, "PLAIN_PORT": plain_port, "NJS_PORT": njs_port,
                "IDENTITY_PORT": identity_port, "INTROSPECT_PATH": rs["issuer_path"] + "/introspect",
                "INTROSPECT_AUTH": introspect_auth, "NJS_MODULE": njs_module, "NJS_DIR": NJS_DIR,
                "TLS_PORT": tls_port, "TLS_CERT": gh.tls_cert, "TLS_KEY": gh.tls_key,
            }, args.sut_cpus, [plain_port, njs_port, tls_port])
            plain = f"http://127.0.0.1:{plain_port}"
            njs = f"http://127.0.0.1:{njs_port}"
            peer_tls = f"https://127.0.0.1:{tls_port}"

        # --- oidc-provider
        if need_op:
            op_proc, op_log = procs.start("oidc-provider", ["node", os.path.join(args.oidc_dir, "server.js")],
                                          cpus=args.sut_cpus, env={"NODE_ENV": "production"})
            op = wait_for_line(op_proc, op_log, r"oidc-provider listening on (http://127\.0\.0\.1:\d+)", "oidc-provider").group(1)
            op_opaque = h.form(op + "/token", {"grant_type": "client_credentials", "client_id": "opaque",
                                               "client_secret": "secret-opaque", "scope": "my-scope"})["access_token"]
        setup_times["start_and_configure_s"] = round(time.time() - t0, 2)

        # --- Gatehouse with 1 route and with N routes (separate processes, same pinning)
        gh1 = gh10k = None
        mid = args.routes // 2
        if wanted("routes_10k_vs_1"):
            gh1 = Gatehouse(procs, args.gatehouse, args.scratch, "gatehouse-1route", args.sut_cpus, threads)
            gh1.api("POST", "/services", {"name": "up", "url": upstream + "/"})
            gh1.api("POST", "/routes", {"name": f"r-{mid}", "paths": [f"/r-{mid}"], "service": {"name": "up"}})
            gh10k = Gatehouse(procs, args.gatehouse, args.scratch, "gatehouse-routes", args.sut_cpus, threads)
            gh10k.api("POST", "/services", {"name": "up", "url": upstream + "/"})
            t_r = time.time()
            how = create_routes(gh10k, args.routes, args.routes_via_api)
            setup_times["create_routes_s"] = round(time.time() - t_r, 2)
            setup_times["routes"] = args.routes
            setup_times["routes_created_by"] = how
            log(f"{args.routes} routes created ({how}) in {setup_times['create_routes_s']}s")

        # --- workloads
        def tok_body(server):
            return urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": server["client_id"],
                                           "client_secret": server["client_secret"], "scope": "my-scope"})
        def op_tok_body(cid):
            return urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": cid,
                                           "client_secret": f"secret-{cid}", "scope": "my-scope"})
        specs = {
            "upstream_direct": (
                {"url": upstream + "/", "script": "get.lua"}, None),
        }
        gh_pid = gh.pid if gh else None
        if need_peer:
            bearer = f"Authorization: Bearer {cached_token}"
            specs.update({
                "proxy_no_plugin": (
                    {"url": gh.proxy + "/bench", "script": "get.lua", "rss_pid": gh_pid},
                    {"url": plain + "/bench", "script": "get.lua"}),
                "proxy_introspection_cached_vs_nginx_plain": (
                    {"url": gh.proxy + "/auth", "script": "get.lua", "env": {"BENCH_HEADER": bearer}, "rss_pid": gh_pid},
                    {"url": plain + "/bench", "script": "get.lua", "env": {"BENCH_HEADER": bearer}}),
                "proxy_introspection_cached_vs_nginx_njs": (
                    {"url": gh.proxy + "/auth", "script": "get.lua", "env": {"BENCH_HEADER": bearer}, "rss_pid": gh_pid},
                    {"url": njs + "/cached/", "script": "get.lua", "env": {"BENCH_HEADER": bearer}}),
                "proxy_introspection_miss": (
                    {"url": gh.proxy + "/miss", "script": "rotate_tokens.lua", "env": {"BENCH_TOKEN_FILE": token_file}, "rss_pid": gh_pid},
                    {"url": njs + "/nocache/", "script": "rotate_tokens.lua", "env": {"BENCH_TOKEN_FILE": token_file},
                     "bad_token_status": 403}),
                "proxy_tls_keepalive": (
                    {"url": gh.proxy_tls + "/bench", "script": "get.lua", "rss_pid": gh_pid},
                    {"url": peer_tls + "/bench", "script": "get.lua"}),
                # wrk reconnects after each `Connection: close` answer, without resuming the
                # TLS session: a full handshake per request on both sides.
                "proxy_tls_handshakes": (
                    {"url": gh.proxy_tls + "/bench", "script": "get.lua", "rss_pid": gh_pid,
                     "env": {"BENCH_HEADER": "Connection: close"}},
                    {"url": peer_tls + "/bench", "script": "get.lua",
                     "env": {"BENCH_HEADER": "Connection: close"}}),
                "proxy_h2": (
                    {"url": gh.proxy_tls + "/bench", "script": "get.lua", "tool": "h2load", "rss_pid": gh_pid},
                    {"url": peer_tls + "/bench", "script": "get.lua", "tool": "h2load"}),
            })
        if need_op:
            specs["introspect_endpoint"] = (
                {"url": rs["issuer"] + "/introspect", "script": "post_form.lua", "rss_pid": gh_pid,
                 "env": {"BENCH_BODY": urllib.parse.urlencode({"token": introspect_jwt}),
                         "BENCH_HEADER": f"Authorization: {introspect_auth}"},
                 "expect_json": ("active", True)},
                {"url": op + "/token/introspection", "script": "post_form.lua",
                 "env": {"BENCH_BODY": urllib.parse.urlencode({"token": op_opaque}),
                         "BENCH_HEADER": "Authorization: " + basic("introspector", "secret-introspector")},
                 "expect_json": ("active", True)})
            for alg, cid in (("RS256", "rs256"), ("ES256", "es256"), ("EdDSA", "eddsa")):
                specs[f"token_{cid}"] = (
                    {"url": servers[alg]["issuer"] + "/oauth/token", "script": "post_form.lua", "rss_pid": gh_pid,
                     "env": {"BENCH_BODY": tok_body(servers[alg])}, "expect_json": ("access_token", "*")},
                    {"url": op + "/token", "script": "post_form.lua",
                     "env": {"BENCH_BODY": op_tok_body(cid)}, "expect_json": ("access_token", "*")})
        if gh10k:
            specs["routes_10k_vs_1"] = (
                {"url": gh10k.proxy + f"/r-{mid}", "script": "get.lua", "rss_pid": gh10k.pid},
                {"url": gh1.proxy + f"/r-{mid}", "script": "get.lua"})

        order = BASELINES + [w[0] for w in WORKLOADS]
        order = [n for n in order if wanted(n)]
        for name in order:
            a, b = specs[name]
            check_spec(h, name + " (Gatehouse)" if b else name, a)
            if b:
                check_spec(h, name + " (peer)", b)
        # Token JWT algorithms really are what they claim.
        for name, (a, b) in specs.items():
            if name.startswith("token_") and wanted(name):
                for side in (a, b):
                    st, data = h.request("POST", side["url"], body=side["env"]["BENCH_BODY"].encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
                    hdr = json.loads(base64.urlsafe_b64decode(json.loads(data)["access_token"].split(".")[0] + "=="))
                    want = {"token_rs256": "RS256", "token_es256": "ES256", "token_eddsa": "EdDSA"}[name]
                    if hdr.get("alg") != want:
                        raise Fail(f"{name}: {side['url']} issued a token with alg {hdr.get('alg')}, want {want}")
        h.close()
        log("sanity checks passed; every process is up")
        meta["setup"] = setup_times

        n_meas = sum(2 if specs[n][1] else 1 for n in order)
        est = n_meas * (args.rounds * (args.duration + 1) + args.warmup + 1)
        if order:
            log(f"{len(order)} workloads, {n_meas} sides, {args.rounds} rounds of {args.duration}s: about {est // 60}m{est % 60:02d}s")

        for name in order:
            a, b = specs[name]
            log(f"{name}: warm-up")
            for side in (a, b) if b else (a,):
                (run_h2load if side.get("tool") == "h2load" else run_wrk)(args, side, args.warmup)
            sa, sb = [], []
            for r in range(args.rounds):
                sides = [("gatehouse", a, sa)] + ([("peer", b, sb)] if b else [])
                if r % 2 == 1:
                    sides.reverse()
                for who, spec, acc in sides:
                    time.sleep(0.5)
                    res = measure(args, procs, spec, args.duration)
                    res["round"] = r + 1
                    acc.append(res)
                    err = f" ERRORS {res['errors']}" if res["errors"] else ""
                    rss = f", rss {res['peak_rss_mb']:.1f} MB" if res.get("peak_rss_mb") else ""
                    cpu = (f", cpu sut {res['sut_cpu_busy']:.0%} load {res['load_cpu_busy']:.0%}"
                           f" foreign {res['foreign_cpu_cores']:.2f} steal {res['steal_cpu_cores']:.2f}")
                    p99 = f"{res['p99_ms']:.2f} ms" if res["p99_ms"] is not None else "-"
                    log(f"  round {r + 1} {who:9s} {res['rps']:>10,.0f} rps  p99 {p99}{rss}{cpu}{err}")
            results[name] = {"gatehouse": sa, "peer": sb}

        cache = cache_bound(args, procs, h, upstream, threads, setup_times) if wanted(CACHE_WORKLOAD) else None
    finally:
        procs.stop_all()

    # --- report
    latest, full = {}, {}
    failed = []
    for name in [n for n in BASELINES + [w[0] for w in WORKLOADS] if n in results]:
        sa, sb = results[name]["gatehouse"], results[name]["peer"]
        errors = sum(sum(s["errors"].values()) for s in sa + sb)
        ga, pa = summarize(sa, "rps"), summarize(sb, "rps")
        ga99, pa99 = summarize(sa, "p99_ms"), summarize(sb, "p99_ms")
        rss = [s["peak_rss_mb"] for s in sa if s.get("peak_rss_mb") is not None]
        ratio = ga["median"] / pa["median"] if ga and pa and pa["median"] else None
        entry = {
            "gatehouse_rps": round(ga["median"], 1) if ga else None,
            "peer_rps": round(pa["median"], 1) if pa else None,
            "ratio": round(ratio, 3) if ratio is not None else None,
            "gatehouse_p99_ms": round(ga99["median"], 3) if ga99 else None,
            "peer_p99_ms": round(pa99["median"], 3) if pa99 else None,
            "gatehouse_peak_rss_mb": round(max(rss), 1) if rss else None,
        }
        if errors:
            failed.append(f"{name}: {errors} failed requests (non-2xx/3xx, socket errors or timeouts)")
        gcost, pcost = summarize(sa, "sut_us_per_req"), summarize(sb, "sut_us_per_req")
        full[name] = {
            "summary": entry,
            "gatehouse_rps": ga, "peer_rps": pa, "gatehouse_p99_ms": ga99, "peer_p99_ms": pa99,
            "gatehouse_sut_us_per_req": gcost, "peer_sut_us_per_req": pcost,
            "gatehouse_load_us_per_req": summarize(sa, "load_us_per_req"),
            "peer_load_us_per_req": summarize(sb, "load_us_per_req"),
            # < 1: a request costs the system under test's CPUs less on Gatehouse than on the peer.
            "sut_cost_ratio": (round(gcost["median"] / pcost["median"], 3)
                               if gcost and pcost and pcost["median"] else None),
            # Both sides' throughput was held by the load CPUs (wrk + upstream), not the SUT's:
            # the rps ratio then says little, the SUT cost per request says how the sides compare.
            "load_bound": bool(sb) and all(
                statistics.median(x["load_cpu_busy"] for x in side)
                > statistics.median(x["sut_cpu_busy"] for x in side)
                for side in (sa, sb)),
            "round_ratios": [x["rps"] / y["rps"] for x, y in zip(sa, sb)] if sb else None,
            "samples": {"gatehouse": sa, "peer": sb},
            "failed_requests": errors,
            "max_foreign_cpu_cores": max((x.get("foreign_cpu_cores", 0) for x in sa + sb), default=0),
            "max_steal_cpu_cores": max((x.get("steal_cpu_cores", 0) for x in sa + sb), default=0),
        }
        tw = next((w for w in WORKLOADS if w[0] == name), None)
        if tw:
            full[name]["peer_description"] = tw[1]
            full[name]["target"] = tw[3]
            full[name]["target_met"] = target_met(name, entry, tw[2])
        if name not in BASELINES:
            latest[name] = entry

    meta["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    meta["duration_s"] = round(time.time() - started, 1)
    meta["loadavg_end"] = open("/proc/loadavg").read().split()[:3]

    print()
    if full:
        print_table(full, meta, args)
    if cache:
        print_cache_bound(cache)
        if cache["failed_requests"]:
            failed.append(f"{CACHE_WORKLOAD}: {cache['failed_requests']} failed requests "
                          f"(non-2xx/3xx, socket errors or timeouts)")
    # A partial run (--only) must not replace the record of the last full run: it goes to
    # only-latest.json / only-latest-full.json instead (ignored by git).
    prefix = "only-" if args.only else ""
    with open(os.path.join(args.results, f"{prefix}latest.json"), "w") as f:
        json.dump(latest, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.results, f"{prefix}latest-full.json"), "w") as f:
        json.dump({"meta": meta, "workloads": dict(full, **({CACHE_WORKLOAD: cache} if cache else {}))}, f, indent=2)
        f.write("\n")
    log(f"wrote {os.path.join(args.results, prefix + 'latest.json')} and {prefix}latest-full.json "
        f"({meta['duration_s']:.0f}s in all)")
    if failed:
        for f_ in failed:
            log("FAILED: " + f_)
        return 1
    return 0


def target_met(name, s, tgt):
    """True/False against the performance.md target; None when not measurable."""
    if s["ratio"] is None:
        return None
    ok = s["ratio"] >= tgt
    if name == "proxy_no_plugin" and s["gatehouse_p99_ms"] is not None and s["peer_p99_ms"]:
        ok = ok and s["gatehouse_p99_ms"] <= 1.2 * s["peer_p99_ms"]
    return ok


def print_table(full, meta, args):
    targets = {w[0]: (w[1], w[2], w[3]) for w in WORKLOADS}
    rows = [("workload", "Gatehouse rps (min-max)", "peer rps (min-max)", "ratio", "target", "GH p99 ms", "peer p99 ms",
             "SUT us/req GH/peer", "GH RSS MB", "peer")]
    for name, v in full.items():
        s = v["summary"]
        if name in targets:
            peer_desc, tgt, tdesc = targets[name]
            met = target_met(name, s, tgt)
            target = tdesc + ("" if met is None else " ok" if met else " MISS")
        else:
            peer_desc, target = "(baseline: wrk -> upstream nginx)", ""
        rows.append((
            name,
            fmt_rate(v["gatehouse_rps"]),
            fmt_rate(v["peer_rps"]) if v["peer_rps"] else "-",
            f"{s['ratio']:.2f}" if s["ratio"] is not None else "-",
            target,
            fmt_ms(v["gatehouse_p99_ms"]),
            fmt_ms(v["peer_p99_ms"]) if v["peer_p99_ms"] else "-",
            fmt_cost(v),
            f"{s['gatehouse_peak_rss_mb']:.1f}" if s["gatehouse_peak_rss_mb"] is not None else "-",
            peer_desc,
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    m = meta["method"]
    print(f"Gatehouse benchmark ({meta['mode']}): {m['rounds']} rounds x {m['duration_s']}s, {m['wrk']}, "
          f"SUT on CPU {m['sut_cpus']}, wrk+upstream on CPU {m['load_cpus']}; median (min-max)")
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(widths[j]) if j in (0, 4, 9) else c.rjust(widths[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    bound = [n for n, v in full.items() if v.get("load_bound")]
    if bound:
        print("NOTE: on both sides the load CPUs (wrk + upstream) were busier than the SUT's: "
              + ", ".join(bound) + " -- their throughput is held by the load core; "
              "SUT us/req (a request's CPU time on the SUT's core, softirq included) compares the sides there.")
    noisy = {n: v["max_foreign_cpu_cores"] for n, v in full.items() if v["max_foreign_cpu_cores"] > 0.05}
    if noisy:
        print("NOTE: processes outside the benchmark used CPU during some samples (cores, max per workload): "
              + ", ".join(f"{n} {c:.2f}" for n, c in noisy.items()) + " -- those numbers are noisy.")
    else:
        print("No other process used measurable CPU during the samples (foreign CPU <= 0.05 cores).")
    stolen = {n: v["max_steal_cpu_cores"] for n, v in full.items() if v["max_steal_cpu_cores"] > 0.02}
    if stolen:
        print("NOTE: the hypervisor took CPU time from this VM during some samples (steal, cores, max per "
              "workload): " + ", ".join(f"{n} {c:.2f}" for n, c in stolen.items()) + " -- those numbers are noisy.")
    else:
        print("The hypervisor took no measurable CPU time from this VM (steal <= 0.02 cores).")
    print()


def print_cache_bound(c):
    """The cache_bound_100k lines printed under the table: one line per cache size."""
    print(f"{CACHE_WORKLOAD}: {c['tokens']:,} distinct {c['token_alg']} tokens (minted in {c['mint_s']:.1f}s), "
          f"each sent once through oauth2-introspection (ttl {c['ttl_s']} s) on a fresh Gatehouse per route; "
          f"identity server in its own process")
    rows = [("route", "cache_size", "requests", "every token", "rps", "RSS before MB", "peak RSS MB",
             "RSS after MB", "peak - before", "per entry")]
    for r in c["routes"].values():
        grow = (r["peak_rss_mb"] - r["rss_before_mb"]) if None not in (r["peak_rss_mb"], r["rss_before_mb"]) else None
        entries = min(c["tokens"], r["cache_size"])
        rows.append((
            r["route"], f"{r['cache_size']:,}", f"{r['requests']:,}",
            "yes" if r["all_tokens_requested"] else "NO", f"{r['rps']:,.0f}",
            *(f"{v:.1f}" if v is not None else "-" for v in (r["rss_before_mb"], r["peak_rss_mb"], r["rss_after_mb"])),
            f"{grow:+.1f} MB" if grow is not None else "-",
            f"~{grow * 1024 / entries:.2f} KB" if grow is not None else "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  " + "  ".join(v.ljust(widths[j]) if j == 0 else v.rjust(widths[j]) for j, v in enumerate(r)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print("  (per entry: peak - before over min(tokens, cache_size) cached entries; "
          f"peak RSS since {next(iter(c['routes'].values()))['peak_rss_since']})")
    if c["max_foreign_cpu_cores"] > 0.05:
        print(f"  NOTE: processes outside the benchmark used up to {c['max_foreign_cpu_cores']:.2f} cores "
              "during the fill; rps is noisy (RSS is not affected)")
    print()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        print(f"bench: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
