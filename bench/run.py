#!/usr/bin/env python3
"""`make bench`: our filter against bare Envoy and Envoy's native filters, side by side.

Every scenario runs in this one run on this machine with the same load: Envoy with
`--concurrency 1` pinned to core 0, wrk (keep-alive, fixed connections) pinned to core 1, a
warm-up, then several rounds; the table reports medians. Routes answer with a direct response, so
what differs between scenarios is the filter chain alone. Each round also records the CPU time
the serving processes spent per request (it reads through other load on the machine) and wrk's
own CPU (a load generator near its whole core bounds the scenario). Writes bench/RESULTS.md.

Environment: BENCH_ROUNDS (default 3), BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default 32).
"""

import datetime
import hashlib
import json
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402  (the cluster scenario, bench/cluster.py)
import directory  # noqa: E402  (the control-plane scenario, bench/directory.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVOY = os.path.join(ROOT, ".venv", "bin", "envoy")
WASM = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "apim_filter.wasm")
# Baselines (bench/null-filter): a proxy-wasm filter that does nothing, with the fewest callbacks
# Envoy needs, and with every callback apim-filter exports.
NULL_WASM = os.path.join(ROOT, "target", "null-filter", "min", "wasm32-wasip1", "release", "null_filter.wasm")
NULL_SAME_WASM = os.path.join(ROOT, "target", "null-filter", "same", "wasm32-wasip1", "release", "null_filter.wasm")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = 3
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
API_KEY = "bench-api-key-0"
PATH = "/bench/1.0.0/items"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def credentials():
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "--example", "bench-credentials"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def listener(name, port, http_filters, route):
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
                "http_filters": http_filters + [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }],
            },
        }]}],
    }


DIRECT = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}


def bootstrap(http_filters, port, admin, clusters=(), upstream_port=None, extra=None):
    """An Envoy bootstrap (JSON) whose only route answers 200 directly; with `upstream_port`, the
    route goes to a second listener of the same Envoy that answers so (Envoy's own rate-limit
    filter acts only on routes to a cluster). `extra`: more top-level bootstrap fields."""
    listeners = [listener("bench", port, http_filters, DIRECT)]
    clusters = list(clusters)
    if upstream_port:
        listeners[0] = listener("bench", port, http_filters, {"match": {"prefix": "/"}, "route": {"cluster": "backend"}})
        listeners.append(listener("backend", upstream_port, [], DIRECT))
        clusters.append({"name": "backend", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
            "cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}}}]}]}})
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
        **(extra or {}),
    }


def floor_scenarios():
    """Bare Envoy, the do-nothing filters and our filter on an open resource, side by side."""
    return [
        ("a", "(a) bare Envoy", [], [], 200),
        ("null", "(null) do-nothing filter, fewest callbacks", wasm_filter({}, NULL_WASM), [], 200),
        ("null-same", "(null) do-nothing filter, our callbacks", wasm_filter({}, NULL_SAME_WASM), [], 200),
        ("open", "(open) apim-filter, open resource", wasm_filter(open_config()), [], 200),
        ("open-quiet", "(open) without stats or log fields", wasm_filter(quiet(open_config())), [], 200),
    ]


def micro(creds):
    """The filter's own cost per request without Envoy (bench/micro.mjs: the .wasm in Node's V8
    behind a minimal host): microseconds (fastest of ten batches, and the median) and host calls
    per request, for the scenarios below and the do-nothing filter."""
    base = [(":method", "GET"), (":path", PATH), (":authority", "127.0.0.1"), (":scheme", "http"),
            ("x-forwarded-proto", "http"), ("x-request-id", "9b2c1c8e-8c4e-4e8a-9a4b-0c1d2e3f4a5b")]
    scenarios = [
        ("open", open_config(), []),
        ("open-quiet", quiet(open_config()), []),
        ("open-struct", as_struct(open_config()), []),
        ("c", our_config(creds), [("authorization", f"Bearer {creds['token']}")]),
        ("c-struct", as_struct(our_config(creds)), [("authorization", f"Bearer {creds['token']}")]),
        ("c-quiet", quiet(our_config(creds)), [("authorization", f"Bearer {creds['token']}")]),
        ("d", our_config(creds), [("apikey", API_KEY)]),
    ]
    path = os.path.join(tempfile.mkdtemp(prefix="bench-micro-"), "scenarios.json")
    with open(path, "w") as f:
        json.dump([{"name": name, "config": config, "headers": base + extra} for name, config, extra in scenarios], f)
    ours = subprocess.run(["taskset", "-c", "1", "node", os.path.join(ROOT, "bench", "micro.mjs"), WASM, path, "5"],
                          check=True, capture_output=True, text=True).stdout
    with open(path, "w") as f:
        json.dump([{"name": "null", "config": {}, "headers": base}], f)
    null = subprocess.run(["taskset", "-c", "1", "node", os.path.join(ROOT, "bench", "micro.mjs"), NULL_SAME_WASM, path, "5"],
                          check=True, capture_output=True, text=True).stdout
    return json.loads(null) + json.loads(ours)


def micro_report(results):
    lines = [
        "## The filter's own cost per request (no Envoy)",
        "",
        "`bench/micro.mjs` runs the `.wasm` in Node's V8 (the engine Envoy embeds) behind a minimal proxy-wasm"
        " host and drives each request's callbacks (context create, request headers, response headers,"
        " response body, delete) in a loop. Microseconds are the fastest of ten batches (the median beside it):"
        " what the filter's code and its ABI traffic cost, free of the noise an Envoy run carries, and comparable"
        " between builds. Host calls are per request. The host here is JavaScript: Envoy's own side of each call"
        " (building filter state, header maps) costs more, which is why the call counts matter. Node's V8 is older"
        " than Envoy's and generates different code for some loops: a change of code generation (an optimization"
        " level, a crate version) is measured in Envoy (bench/NOTES.md, verification).",
        "",
        "| scenario | us per request | median | host calls per request |",
        "|---|---|---|---|",
    ]
    for r in results:
        calls = ", ".join(f"{name} {count:g}" for name, count in sorted(r["calls"].items())) or "none"
        lines.append(f"| {r['name']} | {r['us']:.2f} | {r['median_us']:.2f} | {calls} |")
    return lines + [""]


def build_null_filters():
    """Builds the two do-nothing baselines (a second each: no dependencies)."""
    crate = os.path.join(ROOT, "bench", "null-filter")
    for features, out in (([], "min"), (["--features", "same-callbacks"], "same")):
        subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1", "--target-dir",
                        os.path.join(ROOT, "target", "null-filter", out)] + features, cwd=crate, check=True)


def wasm_filter(config, wasm=WASM):
    return [{
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "apim", "root_id": "apim",
                "vm_config": {"vm_id": "apim", "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(config)},
            },
        },
    }]


def native_filters(creds, cache, cache_size=100):
    provider = {
        "issuer": creds["issuer"],
        "audiences": ["bench"],
        "local_jwks": {"inline_string": json.dumps({"keys": [creds["jwk"]]})},
    }
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": cache_size}
    never = {"numerator": 100, "denominator": "HUNDRED"}
    return [
        {
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {"bench": provider},
                "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
            },
        },
        {
            "name": "envoy.filters.http.local_ratelimit",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "bench_rl",
                "token_bucket": {"max_tokens": 1000000000, "tokens_per_fill": 1000000000, "fill_interval": "1s"},
                "filter_enabled": {"runtime_key": "rl_enabled", "default_value": never},
                "filter_enforced": {"runtime_key": "rl_enforced", "default_value": never},
            },
        },
    ]


def native_full_filters(creds, applications=10):
    """(b') doing what c does wherever Envoy has a native filter for it: the cached JWT check, six
    claims copied to request headers (c sets six auth-context headers), the payload kept as
    metadata, a subscription check (RBAC: the token's client_id is one of the `applications`
    subscribed ones) and two counters (c counts the API and the subscription levels; one caller,
    so one bucket each). Still not done natively: WSO2's faults, per-API and per-application
    stats, the access-log fields."""
    jwt, _ = native_filters(creds, cache=True)
    provider = jwt["typed_config"]["providers"]["bench"]
    provider["payload_in_metadata"] = "jwt_payload"
    provider["claim_to_headers"] = [{"header_name": f"x-native-{claim}", "claim_name": claim}
                                    for claim in ("sub", "client_id", "scope", "iss", "aud", "exp")]
    subscribed = [{"metadata": {"filter": "envoy.filters.http.jwt_authn",
                                "path": [{"key": "jwt_payload"}, {"key": "client_id"}],
                                "value": {"string_match": {"exact": "bench-client" if i == 0 else f"client-{i}"}}}}
                  for i in range(applications)]
    rbac = {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW", "policies": {"subscribed": {
                "permissions": [{"any": True}], "principals": [{"or_ids": {"ids": subscribed}}]}}},
        },
    }
    never = {"numerator": 100, "denominator": "HUNDRED"}
    limit = lambda level: {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": f"bench_rl_{level}",
            "token_bucket": {"max_tokens": 1000000000, "tokens_per_fill": 1000000000, "fill_interval": "1s"},
            "filter_enabled": {"runtime_key": f"rl_{level}_enabled", "default_value": never},
            "filter_enforced": {"runtime_key": f"rl_{level}_enforced", "default_value": never},
        },
    }
    return [jwt, rbac, limit("api"), limit("subscription")]


def our_config(creds, applications=10, cache_entries=10000):
    """API- and subscription-level throttling with limits never reached, one key manager, and
    `applications` applications each with a client id, an opaque API key and a subscription."""
    apps, subs = [], []
    for i in range(applications):
        client = "bench-client" if i == 0 else f"client-{i}"
        key = f"bench-api-key-{i}"
        apps.append({"id": f"app-{i}", "name": f"App {i}", "owner": "bench",
                     "client_ids": [{"id": client}],
                     "api_keys": [{"sha256": hashlib.sha256(key.encode()).hexdigest()}]})
        subs.append({"application": f"app-{i}", "api": "Bench:1.0.0", "tier": "Huge"})
    return {
        "credentials": {"verified_cache_entries": cache_entries},
        "key_managers": [{"name": "bench", "issuer": creds["issuer"], "audiences": ["bench"],
                          "algorithms": ["RS256", "ES256", "EdDSA"],
                          "jwks": {"keys": [creds["jwk"], creds["es256"]["jwk"], creds["eddsa"]["jwk"]]}}],
        "apis": [{"name": "Bench", "context": "/bench", "version": "1.0.0", "security": ["oauth2", "api_key"],
                  "policy": "Huge", "endpoints": {"production": "unused"},
                  "resources": [{"method": "GET", "path": "/items"}]}],
        "applications": apps,
        "subscriptions": subs,
        "policies": {"Huge": {"requests": 1000000000000, "per": "minute"}},
    }


def with_backend_jwt(config, algorithm):
    """`config` with the backend JWT on (WSO2's X-JWT-Assertion), signed with a test key."""
    key = {"RS256": "rsa-a.pem", "ES256": "ec-p256.pem"}[algorithm]
    config = dict(config)
    config["backend_jwt"] = {"algorithm": algorithm,
                             "private_key": open(os.path.join(ROOT, "tests", "fixtures", "keys", key)).read()}
    return config


def quiet(config):
    """`config` without the per-API stats and the access-log fields."""
    config = dict(config)
    config["observability"] = {"api_stats": False, "application_stats": 0, "access_log_fields": False}
    return config


def without_context(config):
    """`config` without the auth-context headers (`credentials.context_headers: false`)."""
    config = dict(config)
    config["credentials"] = {**config.get("credentials", {}), "context_headers": False}
    return config


def context_scenarios(creds):
    """What the auth-context headers cost: (c) with and without them, beside the open resource."""
    bearer = [("Authorization", f"Bearer {creds['token']}")]
    return [
        ("open", "(open) apim-filter, open resource", wasm_filter(open_config()), [], 200),
        ("c", "(c) apim-filter, JWT", wasm_filter(our_config(creds)), bearer, 200),
        ("c-bare", "(c) without the auth-context headers", wasm_filter(without_context(our_config(creds))), bearer, 200),
        ("open-quiet", "(open) without stats or log fields", wasm_filter(quiet(open_config())), [], 200),
        ("c-quiet-bare", "(c) without stats, log fields or auth-context headers",
         wasm_filter(without_context(quiet(our_config(creds)))), bearer, 200),
    ]


def as_struct(config):
    """`config` handing the access-log fields over as one `Struct` property (read with CEL)."""
    config = dict(config)
    config["observability"] = {"access_log_encoding": "struct"}
    return config


def log_scenarios(creds):
    """The access-log fields as properties, as one `Struct`, and not at all, side by side."""
    bearer = [("Authorization", f"Bearer {creds['token']}")]
    return [
        ("open", "(open) apim-filter, open resource", wasm_filter(open_config()), [], 200),
        ("open-struct", "(open) log fields as one Struct", wasm_filter(as_struct(open_config())), [], 200),
        ("open-quiet", "(open) without stats or log fields", wasm_filter(quiet(open_config())), [], 200),
        ("c", "(c) apim-filter, JWT", wasm_filter(our_config(creds)), bearer, 200),
        ("c-struct", "(c) log fields as one Struct", wasm_filter(as_struct(our_config(creds))), bearer, 200),
        ("c-quiet", "(c) without stats or log fields", wasm_filter(quiet(our_config(creds))), bearer, 200),
    ]


def ext_authz(authorizer_port):
    """Envoy's ext_authz calling a minimal authorizer (an Envoy listener that answers 200 to
    everything, on the same core): the shape of Choreo Connect's enforcer or Authorino, at its
    cheapest. Returns (filters, clusters)."""
    filters = [{
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "http_service": {"server_uri": {"uri": f"http://127.0.0.1:{authorizer_port}", "cluster": "authorizer",
                                            "timeout": "1s"}},
        },
    }]
    clusters = [{"name": "authorizer", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
        "cluster_name": "authorizer", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": authorizer_port}}}}]}]}}]
    return filters, clusters


def open_config():
    return {"apis": [{"name": "Bench", "context": "/bench", "version": "1.0.0", "security": [],
                      "endpoints": {"production": "unused"}, "resources": [{"method": "GET", "path": "/items"}]}]}


def without_policies(config):
    config = dict(config)
    config["policies"] = {}
    config["apis"] = [dict(api, policy=None) for api in config["apis"]]
    config["subscriptions"] = [dict(s, tier="Unlimited") for s in config["subscriptions"]]
    return config


class Envoy:
    def __init__(self, filters, label, core="0", clusters=(), upstream=False, concurrency=1, extra=None):
        self.port, self.admin = free_port(), free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-")
        path = os.path.join(self.dir, "envoy.json")
        with open(path, "w") as f:
            json.dump(bootstrap(filters, self.port, self.admin, clusters, free_port() if upstream else None, extra), f)
        self.log = os.path.join(self.dir, "envoy.log")
        self.proc = subprocess.Popen(
            ["taskset", "-c", core, ENVOY, "-c", path, "--concurrency", str(concurrency), "--disable-hot-restart", "--log-level", "info"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT, cwd=ROOT,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"Envoy exited ({label}):\n" + open(self.log).read()[-3000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.proc.kill()
        raise SystemExit(f"Envoy not ready ({label}):\n" + open(self.log).read()[-3000:])

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def configure_ms(self):
        times = [float(m) for m in re.findall(r"configuration accepted: .* in ([0-9.]+) ms", open(self.log).read())]
        return max(times) if times else None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def check(port, headers, expected, path=PATH):
    if isinstance(headers, Rotating):
        headers = headers.first
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    if status != expected:
        raise SystemExit(f"scenario answered {status}, expected {expected}")


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


class Rotating:
    """Headers that change per request: `Authorization: Bearer <token>` round-robin over the
    tokens in `path` (a wrk Lua script does it); `first` is what the scenario check sends.
    `fresh`: every request is to carry a token this Envoy has not seen, so each round starts
    where the last one stopped (`sent`) instead of at the first token."""

    def __init__(self, path, fresh=False):
        self.tokens = path
        with open(path) as f:
            lines = [line.strip() for line in f if line.strip()]
        self.first = [("Authorization", f"Bearer {lines[0]}")]
        self.count = len(lines)
        self.fresh = fresh
        self.sent = 1 if fresh else 0  # the scenario check sends the first token
        self.script = path + ".lua"
        with open(self.script, "w") as f:
            f.write(
                "local tokens = {}\n"
                f"for line in io.lines('{path}') do tokens[#tokens + 1] = 'Bearer ' .. line end\n"
                "local i = 0\n"
                "init = function(args) i = tonumber(args[1] or '0') or 0 end\n"
                "request = function()\n"
                "  i = i % #tokens + 1\n"
                "  return wrk.format(nil, nil, {['Authorization'] = tokens[i]})\n"
                "end\n"
            )

    def reused(self):
        """The share of the requests sent so far that carried a token sent before."""
        return max(0, self.sent - self.count) / max(1, self.sent)


def many_tokens(count, fresh=False):
    path = os.path.join(tempfile.mkdtemp(prefix="bench-tokens-"), "tokens.txt")
    subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "bench-credentials", "--",
                    "--fresh" if fresh else "--tokens", str(count), path], cwd=ROOT, check=True)
    return Rotating(path, fresh)


def cpu_seconds(pid):
    """The CPU time (user and system, all threads) a process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(port, headers, seconds, path=PATH, watch=()):
    """One wrk run. `watch`: the processes serving it (Envoy, and the authorizer for x), whose
    CPU time per request is reported (`cpu_us`), with wrk's own CPU as a share of its core
    (`client_cpu`: near 1.0, the load generator and not the server bounds the run)."""
    args = ["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    script_args = []
    rotating = headers if isinstance(headers, Rotating) else None
    if rotating:
        args += ["-s", rotating.script]
        if rotating.fresh:
            script_args = ["--", str(rotating.sent)]
        headers = []
    for name, value in headers:
        args += ["-H", f"{name}: {value}"]
    served_before = [cpu_seconds(pid) for pid in watch]
    client_before, started = children_cpu_seconds(), time.time()
    out = subprocess.run(args + [f"http://127.0.0.1:{port}{path}"] + script_args, capture_output=True, text=True, check=True).stdout
    elapsed, client = time.time() - started, children_cpu_seconds() - client_before
    served_each = [cpu_seconds(pid) - before for pid, before in zip(watch, served_before)]
    served = sum(served_each)
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    latency = {p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    if rotating and rotating.fresh:
        rotating.sent += requests + CONNECTIONS  # and at most one in flight per connection when it stopped
    # "Socket errors: connect 0, read 3, write 0, timeout 0": requests that got no answer at all.
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(n) for n in errors.groups()) if errors else 0
    return {"rps": rps, "p50": latency.get("50"), "p99": latency.get("99"), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "requests": requests, "socket_errors": socket_errors, "client_cpu": client / max(elapsed, 1e-9),
            "cpu_us": served * 1e6 / requests if watch and requests else None,
            "envoy_cpu_us": served_each[0] * 1e6 / requests if watch and requests else None}


def verify_round(label, result, expected):
    """Every answer of a round was the expected one: all 2xx for 200, none 2xx for a refusal; and
    (nearly) every request got an answer (a few socket errors in a round of 10^5 requests are the
    load generator's, more mean the scenario is not what is measured)."""
    if expected == 200 and result["non2xx"]:
        raise SystemExit(f"{label}: {result['non2xx']} non-2xx answers during the run")
    if expected != 200 and result["non2xx"] != result["requests"]:
        raise SystemExit(f"{label}: {result['requests'] - result['non2xx']} 2xx answers where {expected} was expected")
    if result["socket_errors"] * 1000 > result["requests"]:
        raise SystemExit(f"{label}: {result['socket_errors']} socket errors in {result['requests']} requests")


def warm_up(port, headers):
    """The warm-up; with many callers, as long as it takes for every caller to have been seen
    once (each first sight verifies a token: a fixed time would not do on a slower machine)."""
    if not isinstance(headers, Rotating) or headers.fresh:
        wrk(port, headers, WARMUP)
        return
    sent = 0
    for _ in range(10):
        sent += wrk(port, headers, 20)["requests"]
        if sent >= headers.count:
            return
    raise SystemExit(f"many callers: {sent} requests in 200 s of warm-up, fewer than the {headers.count} callers")


def summary(label, runs, envoy, headers):
    """The medians of a scenario's rounds, and what the table shows beside them."""
    result = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "client_cpu")}
    for field in ("cpu_us", "envoy_cpu_us"):
        cpu = [r[field] for r in runs if r[field] is not None]
        result[field] = statistics.median(cpu) if cpu else None
    result["rounds"] = [round(r["rps"]) for r in runs]
    result["rss_kib"] = envoy.rss_kib()
    result["configure_ms"] = envoy.configure_ms()
    result["reused"] = headers.reused() if isinstance(headers, Rotating) and headers.fresh else None
    cpu_text = f"  CPU {result['cpu_us']:.1f} us/req" if result["cpu_us"] is not None else ""
    print(f"{label:<40} {result['rps']:>10.0f} req/s  p50 {result['p50']:.3f} ms  p99 {result['p99']:.3f} ms{cpu_text}"
          f"  wrk {result['client_cpu']:.0%}  rounds {result['rounds']}", flush=True)
    return result


def measure(label, filters, headers, expected=200):
    envoy = Envoy(filters, label)
    try:
        check(envoy.port, headers, expected)
        warm_up(envoy.port, headers)
        rounds = [wrk(envoy.port, headers, SECONDS, watch=[envoy.proc.pid]) for _ in range(ROUNDS)]
        for r in rounds:
            verify_round(label, r, expected)
        return summary(label, rounds, envoy, headers)
    finally:
        envoy.stop()


def measure_interleaved(specs):
    """Runs several scenarios with their rounds interleaved (round 1 of each, then round 2, ...),
    so slow drift of a noisy machine lands on every scenario alike. `specs`: (key, label, filters,
    headers, expected status[, companions]): companions are other processes serving the scenario
    (the authorizer of x), whose CPU counts in its CPU per request. Idle Envoys wait on core 0
    while another is measured."""
    specs = [spec if len(spec) == 6 else (*spec, ()) for spec in specs]
    envoys = {}
    try:
        for key, label, filters, headers, expected, _ in specs:
            filters, clusters = filters if isinstance(filters, tuple) else (filters, ())
            envoys[key] = Envoy(filters, key, clusters=clusters)
            check(envoys[key].port, headers, expected)
        for key, label, filters, headers, expected, _ in specs:
            warm_up(envoys[key].port, headers)
        rounds = {key: [] for key, *_ in specs}
        for _ in range(ROUNDS):
            for key, label, filters, headers, expected, companions in specs:
                watch = [envoys[key].proc.pid] + [c.proc.pid for c in companions]
                result = wrk(envoys[key].port, headers, SECONDS, watch=watch)
                verify_round(label, result, expected)
                rounds[key].append(result)
        return {key: summary(label, rounds[key], envoys[key], headers) for key, label, _, headers, *_ in specs}
    finally:
        for envoy in envoys.values():
            envoy.stop()


def measure_with_authorizer(creds, bearer):
    authorizer = Envoy([], "authorizer")
    try:
        return measure_interleaved([("x", "(x) ext_authz, minimal authorizer", ext_authz(authorizer.port), bearer, 200, [authorizer])])
    finally:
        authorizer.stop()


def version(command):
    try:
        return subprocess.run(command, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def main():
    for tool in (ENVOY, WASM):
        if not os.path.exists(tool):
            raise SystemExit(f"missing {tool}: run `make bench`")
    build_null_filters()
    creds = credentials()
    bearer = [("Authorization", f"Bearer {creds['token']}")]
    apikey = [("apikey", API_KEY)]
    started = time.time()
    results = {}
    only = os.environ.get("BENCH_ONLY")
    if only:  # a quick look while optimizing: these scenarios, no scale runs, no RESULTS.md
        scenarios = {
            "a": lambda: measure("(a) bare Envoy", [], []),
            "b'": lambda: measure("(b') (b) with jwt_cache_config", native_filters(creds, cache=True), bearer),
            "b'-full": lambda: measure("(b'-full) (b') with c's work done natively", native_full_filters(creds), bearer),
            "c": lambda: measure("(c) apim-filter, JWT", wasm_filter(our_config(creds)), bearer),
            "d": lambda: measure("(d) apim-filter, opaque API key", wasm_filter(our_config(creds)), apikey),
            "g": lambda: measure("(g) (c) with the backend JWT, RS256", wasm_filter(with_backend_jwt(our_config(creds), "RS256")), bearer),
            "h": lambda: measure("(h) (c) with the backend JWT, ES256", wasm_filter(with_backend_jwt(our_config(creds), "ES256")), bearer),
            "b": lambda: measure("(b) jwt_authn + local_ratelimit", native_filters(creds, cache=False), bearer),
            "f": lambda: measure("(f) apim-filter, JWT, no cache", wasm_filter(our_config(creds, cache_entries=0)), bearer),
            "f-fresh": lambda: measure("(f) RS256, a new token every request", wasm_filter(our_config(creds)),
                                       many_tokens(4_000 * (WARMUP + ROUNDS * SECONDS), fresh=True)),
            "x": lambda: measure_with_authorizer(creds, bearer),
            "e": lambda: measure("(e) apim-filter, 900902 fault", wasm_filter(our_config(creds)), [], expected=401),
            "open": lambda: measure("(diag) open resource, no policies", wasm_filter(open_config()), []),
            "open-quiet": lambda: measure("(diag) open, no stats or log fields", wasm_filter(quiet(open_config())), []),
            "c-quiet": lambda: measure("(diag) (c), no stats or log fields", wasm_filter(quiet(our_config(creds))), bearer),
            "null": lambda: measure("(null) do-nothing filter, fewest callbacks", wasm_filter({}, NULL_WASM), []),
            "null-same": lambda: measure("(null) do-nothing filter, our callbacks", wasm_filter({}, NULL_SAME_WASM), []),
            "floor": lambda: measure_interleaved(floor_scenarios()),
            "log": lambda: measure_interleaved(log_scenarios(creds)),
            "context": lambda: measure_interleaved(context_scenarios(creds)),
            "micro": lambda: print("\n".join(micro_report(micro(creds)))),
            "d0": lambda: measure("(diag) API key, no policies", wasm_filter(without_policies(our_config(creds))), apikey),
            "static-memory": lambda: print("\n".join(static_memory_report(static_memory(creds), None, None, verdict))),
            "cluster": lambda: print("\n".join(cluster.report(cluster.bench(sys.modules[__name__]), verdict))),
            "directory": lambda: print("\n".join(directory.report(directory.bench(sys.modules[__name__], creds), verdict))),
        }
        for key in only.split(","):
            scenarios[key]()
        return 0
    authorizer = Envoy([], "authorizer")
    es256 = [("Authorization", f"Bearer {creds['es256']['token']}")]
    eddsa = [("Authorization", f"Bearer {creds['eddsa']['token']}")]
    callers = many_tokens(10_000)
    # A new token for every request of f-fresh: enough for its warm-up and rounds at 4,000 req/s
    # (2,907 on the machine of 2026-12-06).
    fresh = many_tokens(4_000 * (WARMUP + ROUNDS * SECONDS), fresh=True)
    many = our_config(creds, applications=10_001)  # client-1 .. client-10000 each have an application
    try:
        results = measure_interleaved([
        ("a", "(a) bare Envoy", [], [], 200),
        ("b", "(b) jwt_authn + local_ratelimit", native_filters(creds, cache=False), bearer, 200),
        ("b'", "(b') (b) with jwt_cache_config", native_filters(creds, cache=True), bearer, 200),
        ("b'-full", "(b'-full) (b') with c's work done natively", native_full_filters(creds), bearer, 200),
        ("c", "(c) apim-filter, JWT", wasm_filter(our_config(creds)), bearer, 200),
        ("c-struct", "(c) log fields as one Struct", wasm_filter(as_struct(our_config(creds))), bearer, 200),
        ("d", "(d) apim-filter, opaque API key", wasm_filter(our_config(creds)), apikey, 200),
        ("e", "(e) apim-filter, 900902 fault", wasm_filter(our_config(creds)), [], 401),
        ("f", "(f) apim-filter, JWT, no cache", wasm_filter(our_config(creds, cache_entries=0)), bearer, 200),
        ("g", "(g) (c) with the backend JWT, RS256", wasm_filter(with_backend_jwt(our_config(creds), "RS256")), bearer, 200),
        ("h", "(h) (c) with the backend JWT, ES256", wasm_filter(with_backend_jwt(our_config(creds), "ES256")), bearer, 200),
        ("open", "(open) apim-filter, open resource", wasm_filter(open_config()), [], 200),
        ("open-quiet", "(open) without stats or log fields", wasm_filter(quiet(open_config())), [], 200),
        ("open-struct", "(open) log fields as one Struct", wasm_filter(as_struct(open_config())), [], 200),
        ("null", "(null) do-nothing filter, fewest callbacks", wasm_filter({}, NULL_WASM), [], 200),
        ("null-same", "(null) do-nothing filter, our callbacks", wasm_filter({}, NULL_SAME_WASM), [], 200),
        ("x", "(x) ext_authz, minimal authorizer", ext_authz(authorizer.port), bearer, 200, [authorizer]),
        ])
        cold = measure_interleaved([
            ("b", "(b) jwt_authn + local_ratelimit", native_filters(creds, cache=False), bearer, 200),
            ("f", "(f) RS256, no cache", wasm_filter(our_config(creds, cache_entries=0)), bearer, 200),
            ("f-fresh", "(f) RS256, a new token every request", wasm_filter(our_config(creds)), fresh, 200),
            ("f-es", "(f) ES256, no cache", wasm_filter(our_config(creds, cache_entries=0)), es256, 200),
            ("f-ed", "(f) EdDSA, no cache", wasm_filter(our_config(creds, cache_entries=0)), eddsa, 200),
            ("c10k", "(c) 10,000 callers round-robin", wasm_filter(many), callers, 200),
            ("b'10k", "(b') 10,000 callers, cache 10,000", native_filters(creds, cache=True, cache_size=10_000), callers, 200),
        ])
    finally:
        authorizer.stop()
    results.update({k: v for k, v in cold.items() if k != "b"})
    results["b-cold"] = cold["b"]
    scale = measure_interleaved([
        (n, f"(d) with {n} applications/keys/subscriptions", wasm_filter(our_config(creds, applications=n)), apikey, 200)
        for n in (10, 10_000, 100_000)
    ])

    static_share = static_memory(creds)
    own_cost = micro(creds)
    from_control_plane = directory.bench(sys.modules[__name__], creds)
    across_nodes = cluster.bench(sys.modules[__name__])

    wasm_size = os.path.getsize(WASM)
    write_results(results, scale, static_share, own_cost, from_control_plane, across_nodes, wasm_size, time.time() - started)


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


MANY_NATIVE = "b'10k"
B_CACHED, B_FULL = "b'", "b'-full"


def delta_ms(x, y):
    if x["configure_ms"] is None or y["configure_ms"] is None:
        return "n/a"
    return f"{x['configure_ms'] - y['configure_ms']:.1f} ms"


def ratio(x, y):
    return x / y if y else float("nan")


def verdict(ok):
    return "met" if ok else "missed"


def through_ecds(filters, directory_path):
    """`filters` (one wasm filter) given through extension config discovery from a file in
    `directory_path`, as envoy/examples/ecds/ does, and the bootstrap fields ECDS needs."""
    path = os.path.join(directory_path, "apim-filter.json")
    with open(path, "w") as f:
        json.dump({"version_info": "1", "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": "apim", "typed_config": filters[0]["typed_config"]}]}, f)
    discovered = [{"name": "apim", "config_discovery": {
        "config_source": {"path_config_source": {"path": path}, "resource_api_version": "V3"},
        "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]}}]
    return discovered, {"node": {"id": "bench", "cluster": "bench"}}


# How a static configuration reaches Envoy in `static_memory`: inline in the bootstrap with
# Envoy's default allocator (freed pages kept), the same giving freed pages back, and through ECDS
# from a file giving them back (what docs/HOWTO.md recommends for large static directories).
STATIC_MODES = (("kept", False, None), ("given", False, directory.RELEASE_FREE_PAGES),
                ("ecds", True, directory.RELEASE_FREE_PAGES))


def static_memory(creds):
    """Envoy's settled RSS at rest with the 10- and 100,000-entry static configs, with the
    do-nothing filter (same callbacks; it never reads its configuration: what Envoy itself costs
    for the text) and with apim-filter, in each of `STATIC_MODES`."""
    share = {"text_bytes": len(json.dumps(our_config(creds, applications=100_000)))}
    for n in (10, 100_000):
        config = our_config(creds, applications=n)
        for wasm, who in ((NULL_SAME_WASM, "null"), (WASM, "ours")):
            for mode, discovered, release in STATIC_MODES:
                filters, extra = wasm_filter(config, wasm), dict(release or {})
                with tempfile.TemporaryDirectory() as files:
                    if discovered:
                        filters, fields = through_ecds(filters, files)
                        extra.update(fields)
                    envoy = Envoy(filters, f"static-memory-{who}-{n}-{mode}", extra=extra)
                    try:
                        check(envoy.port, [], 200 if who == "null" else 401)
                        share[(who, n, mode)] = directory.settled_rss_kib(envoy, timeout_s=60)
                    finally:
                        envoy.stop()
    return share


def static_memory_report(share, base, big, verdict):
    """The lines of the scale section on memory at rest (see `static_memory`)."""
    mib = lambda who, n, mode: share[(who, n, mode)] / 1024
    delta = lambda who, mode: mib(who, 100_000, mode) - mib(who, 10, mode)
    columns = [(who, mode) for who in ("null", "ours") for mode, *_ in STATIC_MODES]
    lines = [
        "",
        "Memory at rest (Envoy's RSS settled after start, MiB, one worker). \"kept\": the configuration inline"
        " in the bootstrap, Envoy's allocator keeping freed pages (its default); \"given\": the bootstrap's"
        " `memory_allocator_manager` gives them back to the system, 8 MiB a second; \"ECDS\": the same, with the"
        " filter's configuration given through extension config discovery from a file (envoy/examples/ecds/),"
        " what docs/HOWTO.md recommends for large static directories:",
        "",
        "| config | do-nothing filter, kept | given | ECDS | apim-filter, kept | given | ECDS |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in (10, 100_000):
        lines.append(f"| {n:,} | " + " | ".join(f"{mib(who, n, mode):.1f}" for who, mode in columns) + " |")
    lines.append("| 100,000 over 10 | " + " | ".join(f"{delta(who, mode):.1f}" for who, mode in columns) + " |")
    whole = delta("ours", "ecds")
    ours = {mode: delta("ours", mode) - delta("null", mode) for mode, *_ in STATIC_MODES}
    lines += [
        "",
        f"- Envoy's own share (the do-nothing filter never reads its configuration) for holding the configuration"
        f" text (a {share['text_bytes'] / 1e6:.0f} MB string): {delta('null', 'kept'):.1f} MiB inline keeping"
        f" freed pages, {delta('null', 'given'):.1f} giving them back, {delta('null', 'ecds'):.1f} through ECDS."
        f" apim-filter's share of the 100,000 delta is the rest: {ours['kept']:.1f}, {ours['given']:.1f} and"
        f" {ours['ecds']:.1f} MiB for its VMs (the worker's and the main thread's, each with its own directory).",
        f"- Target <= 64 MiB for the whole Envoy: {whole:.1f} MiB over the 10-entry config through ECDS with pages"
        f" given back: {verdict(whole <= 64)} (Envoy alone is above it holding the text; the control plane's"
        " directory below is the way to that target)."
        + (f" Under load, in the table above: {(big['rss_kib'] - base['rss_kib']) / 1024:.1f} MiB, inline, pages kept." if big else ""),
    ]
    return lines


def write_results(r, scale, static_share, own_cost, from_control_plane, across_nodes, wasm_size, elapsed):
    c_bfull = ratio(r["c"]["rps"], r["b'-full"]["rps"])
    c_a, c_b, c_bc, f_b = ratio(r["c"]["rps"], r["a"]["rps"]), ratio(r["c"]["rps"], r["b"]["rps"]), ratio(r["c"]["rps"], r["b'"]["rps"]), ratio(r["f"]["rps"], r["b"]["rps"])
    c_struct_bc = ratio(r["c-struct"]["rps"], r["b'"]["rps"])

    def by_cpu(numerator, denominator, field="cpu_us"):
        """The denominator's CPU per request over the numerator's (higher: the numerator is cheaper)."""
        mine, theirs = r[numerator].get("cpu_us"), r[denominator].get(field)
        return f"{theirs / mine:.3f}" if mine and theirs else "n/a"

    base = scale[10]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} in {elapsed / 60:.1f} minutes.",
        "",
        f"- Machine: {os.cpu_count()} cores ({cpu_model()}), {platform.platform()}",
        f"- Envoy: {version([ENVOY, '--version'])}",
        f"- rustc: {version(['rustc', '--version'])}; wrk: {version(['sh', '-c', 'wrk --version 2>&1'])}",
        f"- Load: wrk, 1 thread, {CONNECTIONS} keep-alive connections, {WARMUP} s warm-up, {ROUNDS} rounds of {SECONDS} s"
        " interleaved across the scenarios of a table (round 1 of each, then round 2, ...), medians;"
        " Envoy `--concurrency 1` on core 0, wrk on core 1; routes answer directly (200), so only the filter chain differs.",
        "",
        "| scenario | requests/s | p50 ms | p99 ms | CPU µs/request | wrk CPU | rounds (req/s) |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {
        "a": "(a) bare Envoy, router only",
        "b": "(b) native `jwt_authn` (RS256, local JWKS) + `local_ratelimit`",
        "b'": "(b') (b) with `jwt_cache_config`",
        "b'-full": "(b'-full) (b') doing c's work natively: 6 claims to headers, payload metadata, RBAC subscription check, 2 counters",
        "c": "(c) apim-filter: JWT, subscription check, API + subscription throttling",
        "d": "(d) apim-filter: opaque API key",
        "e": "(e) apim-filter: 900902 fault (no credentials)",
        "f": "(f) apim-filter: JWT with the verified-token cache off",
        "g": "(g) (c) with the backend JWT (X-JWT-Assertion), RS256",
        "h": "(h) (c) with the backend JWT, ES256",
        "open": "(open) apim-filter: an open resource, no policy (the floor)",
        "open-quiet": "(open) the same without per-API stats and access-log fields",
        "open-struct": "(open) the same with the access-log fields as one `Struct` (`access_log_encoding`)",
        "c-struct": "(c) with the access-log fields as one `Struct` (`access_log_encoding`)",
        "null": "(null) a do-nothing proxy-wasm filter: the fewest callbacks Envoy needs",
        "null-same": "(null) a do-nothing proxy-wasm filter exporting every callback apim-filter exports",
        "x": "(x) Envoy `ext_authz` to a minimal authorizer that answers allowed",
        "b-cold": "(b) again, beside the cold-token scenarios",
        "f-fresh": "(f) apim-filter: RS256, a token no request carried before on every request (cache on: every lookup misses)",
        "f-es": "(f) apim-filter: ES256 JWT, verified-token cache off",
        "f-ed": "(f) apim-filter: EdDSA JWT, verified-token cache off",
        "c10k": "(c) with 10,000 distinct callers round-robin (10,000 applications, tokens cached)",
        "b'10k": "(b') with 10,000 distinct callers, `jwt_cache_size` 10,000",
    }
    for key, name in names.items():
        x = r[key]
        cpu = f"{x['cpu_us']:.1f}" if x.get("cpu_us") is not None else "n/a"
        if key == "x" and x.get("envoy_cpu_us") is not None:
            cpu += f" ({x['envoy_cpu_us']:.1f} Envoy, {x['cpu_us'] - x['envoy_cpu_us']:.1f} authorizer)"
        if x.get("reused"):
            name += f" ({x['reused']:.0%} of its requests carried a token sent before: too few tokens)"
        lines.append(f"| {name} | {x['rps']:.0f} | {x['p50']:.3f} | {x['p99']:.3f} | {cpu} | {x.get('client_cpu', 0):.0%} |"
                     f" {', '.join(map(str, x['rounds']))} |")
    busy = [key for key in names if r[key].get("client_cpu", 0) >= 0.9]
    lines += [
        "",
        "CPU µs/request: the CPU time the serving processes used in a round (Envoy; for x, Envoy and the"
        " authorizer, both on core 0) over the requests answered, median of the rounds. It does not depend on"
        " whether the process had its core to itself, so it also reads through other load on the machine;"
        " the ratios below give it beside throughput (`by CPU`: the cost per request of the denominator"
        " over the numerator's). wrk CPU: the load generator's share of its core (core 1);"
        + (f" at 90% or more it, not Envoy, may bound the scenario: {', '.join(busy)}." if busy
           else " no scenario reached 90%, so none is bounded by the load generator.")
        + " Envoy's own share of core 0 is requests/s times CPU µs/request.",
        "",
        "| ratio | value | by CPU | target |",
        "|---|---|---|---|",
        f"| c/a | {c_a:.3f} | {by_cpu('c', 'a')} | >= 0.85: {verdict(c_a >= 0.85)} |",
        f"| c/b | {c_b:.3f} | {by_cpu('c', 'b')} | |",
        f"| c/b' | {c_bc:.3f} | {by_cpu('c', B_CACHED)} | >= 1.0: {verdict(c_bc >= 1.0)} |",
        f"| c/b'-full | {c_bfull:.3f} | {by_cpu('c', B_FULL)} | (against native filters doing c's work where Envoy has one: claims to headers, payload metadata, RBAC subscription check, two counters) |",
        f"| c-struct/b' | {c_struct_bc:.3f} | {by_cpu('c-struct', B_CACHED)} | (c with the access-log fields as one Struct) |",
        f"| c-struct/c | {ratio(r['c-struct']['rps'], r['c']['rps']):.3f} | {by_cpu('c-struct', 'c')} | (one Struct against 13 properties) |",
        f"| f/b (across tables) | {f_b:.3f} | {by_cpu('f', 'b')} | (f of the cold table over b of this one: the tables drift apart by several %; the verdict is on f/b (same table) below) |",
        f"| open/a | {ratio(r['open']['rps'], r['a']['rps']):.3f} | {by_cpu('open', 'a')} | >= 0.85: {verdict(ratio(r['open']['rps'], r['a']['rps']) >= 0.85)} (the floor) |",
        f"| open-quiet/a | {ratio(r['open-quiet']['rps'], r['a']['rps']):.3f} | {by_cpu('open-quiet', 'a')} | (the floor without stats and access-log fields) |",
        f"| open-struct/a | {ratio(r['open-struct']['rps'], r['a']['rps']):.3f} | {by_cpu('open-struct', 'a')} | (the floor, access-log fields as one Struct) |",
        f"| null/a | {ratio(r['null']['rps'], r['a']['rps']):.3f} | {by_cpu('null', 'a')} | (proxy-wasm itself: a filter that does nothing) |",
        f"| null-same/a | {ratio(r['null-same']['rps'], r['a']['rps']):.3f} | {by_cpu('null-same', 'a')} | (the same, with our callbacks exported) |",
        f"| open/null-same | {ratio(r['open']['rps'], r['null-same']['rps']):.3f} | {by_cpu('open', 'null-same')} | (what our filter adds on an open resource) |",
        f"| c/null-same | {ratio(r['c']['rps'], r['null-same']['rps']):.3f} | {by_cpu('c', 'null-same')} | (what the full policy adds to proxy-wasm) |",
        f"| c/open | {ratio(r['c']['rps'], r['open']['rps']):.3f} | {by_cpu('c', 'open')} | >= 0.9: {verdict(ratio(r['c']['rps'], r['open']['rps']) >= 0.9)} |",
        f"| c/x | {ratio(r['c']['rps'], r['x']['rps']):.3f} | {by_cpu('c', 'x')} | >= 3: {verdict(ratio(r['c']['rps'], r['x']['rps']) >= 3)} |",
        f"| c/x, authorizer elsewhere | | {by_cpu('c', 'x', 'envoy_cpu_us')} | (x's Envoy alone: the authorizer on another machine) |",
        f"| f/b (same table) | {ratio(r['f']['rps'], r['b-cold']['rps']):.3f} | {by_cpu('f', 'b-cold')} | >= 0.5: {verdict(ratio(r['f']['rps'], r['b-cold']['rps']) >= 0.5)} (RS256) |",
        f"| f-fresh/b | {ratio(r['f-fresh']['rps'], r['b-cold']['rps']):.3f} | {by_cpu('f-fresh', 'b-cold')} | (RS256, a new token every request: f with the cache's lookups that miss, and its inserts) |",
        f"| f-es/b | {ratio(r['f-es']['rps'], r['b-cold']['rps']):.3f} | {by_cpu('f-es', 'b-cold')} | (ES256, ours; b verifies RS256) |",
        f"| f-ed/b | {ratio(r['f-ed']['rps'], r['b-cold']['rps']):.3f} | {by_cpu('f-ed', 'b-cold')} | (EdDSA, ours) |",
        f"| c10k/b'10k | {ratio(r['c10k']['rps'], r[MANY_NATIVE]['rps']):.3f} | {by_cpu('c10k', MANY_NATIVE)} | (many callers) |",
        f"| c10k/c | {ratio(r['c10k']['rps'], r['c']['rps']):.3f} | {by_cpu('c10k', 'c')} | (many callers against one, across tables, and c10k's client runs a Lua script: indicative) |",
        f"| g/c | {ratio(r['g']['rps'], r['c']['rps']):.3f} | {by_cpu('g', 'c')} | (the backend JWT, reused: one per caller and API) |",
        f"| h/c | {ratio(r['h']['rps'], r['c']['rps']):.3f} | {by_cpu('h', 'c')} | |",
        "",
        "Issuing a backend JWT (signing in wasm) happens once per caller and API per reuse period; its cost is"
        " measured as the growth of `on_configure`, which parses the key and signs once:"
        f" RS256 {delta_ms(r['g'], r['c'])}, ES256 {delta_ms(r['h'], r['c'])} (per VM, largest of the VMs).",
        "",
        "## Scale",
        "",
        "The (d) scenario with configs of 10, 10,000 and 100,000 applications, API keys and subscriptions."
        " `on_configure` is the filter's own measurement (logged per VM; the largest shown); RSS is the whole Envoy process"
        " (`--concurrency 1`: the main thread's VM and one worker VM), its delta against the 10-key config.",
        "",
        "| config | on_configure ms | Envoy RSS MiB | RSS delta MiB | requests/s | relative to 10 | CPU µs/request | by CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, x in scale.items():
        lines.append(
            f"| {n:,} | {x['configure_ms'] if x['configure_ms'] is not None else 'n/a'} | {x['rss_kib'] / 1024:.1f} |"
            f" {(x['rss_kib'] - base['rss_kib']) / 1024:.1f} | {x['rps']:.0f} | {ratio(x['rps'], base['rps']):.3f} |"
            f" {x['cpu_us']:.1f} | {ratio(base['cpu_us'], x['cpu_us']):.3f} |"
        )
    big = scale[100_000]
    lines += static_memory_report(static_share, base, big, verdict)
    lines += [
        f"- 100,000 keys: throughput {ratio(big['rps'], base['rps']):.3f} of the 10-key config (target >= 0.95: {verdict(ratio(big['rps'], base['rps']) >= 0.95)};"
        f" by CPU per request {ratio(base['cpu_us'], big['cpu_us']):.3f});"
        f" `on_configure` {big['configure_ms']} ms (target <= 250: {verdict((big['configure_ms'] or 1e9) <= 250)}).",
        f"- `.wasm` size: {wasm_size:,} bytes ({wasm_size / 1048576:.2f} MiB; target < 1.5 MiB: {verdict(wasm_size < 1.5 * 1048576)}).",
        f"- At rest: with the 10-entry config, Envoy's RSS is"
        f" {(static_share[('ours', 10, 'kept')] - static_share[('null', 10, 'kept')]) / 1024:.1f} MiB above"
        " the do-nothing filter's: the module compiled by V8 and its VMs' memory (compare between runs: a build step"
        " that grows it shows here first).",
        "",
    ]
    lines += micro_report(own_cost)
    lines += directory.report(from_control_plane, verdict)
    lines += cluster.report(across_nodes, verdict)
    notes = os.path.join(ROOT, "bench", "NOTES.md")
    if os.path.exists(notes):
        lines += [open(notes).read().rstrip(), ""]
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
