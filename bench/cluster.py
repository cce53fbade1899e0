"""The cluster scenario of `make bench`: two Envoy processes (`--concurrency 1`, one pinned to each
core) sharing one envoyproxy/ratelimit and one Redis, two wrk processes loading them at once.

Throughput with a limit never reached (10^9 a minute), counting per node, leased, strict (one
call per request), and Envoy's own `ratelimit` filter calling the same service once per request;
the service calls each mode makes per request. Every mode routes to an upstream (a second
listener of the same Envoy), because Envoy's own filter ignores routes that answer directly. Then exactness: a limit of N per 10-second window
with demand far above it on both nodes, every request inside one window, for leased and strict
counting; and the bound on under-admission: one node's traffic stops after a second while it holds
tokens, the other's goes on.
"""

import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

SERVICE_BIN = None  # set by bench()
WINDOW = 10
EXACT_LIMIT = 2000
# The stranded-tokens limit is sized from the leased throughput just measured, so that the node
# still loaded asks for more than the limit whatever the machine's speed: under-admission can only
# be seen when demand exceeds the limit (a fixed 20,000 read unserved demand as under-admission on
# a slow machine). A third of what the two nodes would ask for in the window with both loaded.
STRANDED_SHARE = 1 / 3
HUGE = 1_000_000_000

NATIVE_DOMAIN = """domain: native
descriptors:
  - key: generic_key
    value: bench
    rate_limit: { unit: minute, requests_per_unit: 1000000000 }
"""


def wait(what, ready, proc, log):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited:\n" + open(log).read()[-3000:])
        if ready():
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} not ready")


def redis_ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(7) == b"+PONG\r\n"
    except OSError:
        return False


def http_ok(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


class Engine:
    """Redis and envoyproxy/ratelimit, with the shipped domain and a `native` domain for Envoy's
    own rate-limit filter."""

    def __init__(self, run):
        self.run = run
        self.dir = tempfile.mkdtemp(prefix="bench-rls-")
        self.redis_port, self.grpc_port, self.http_port, self.debug_port = (run.free_port() for _ in range(4))
        redis_log = os.path.join(self.dir, "redis.log")
        self.redis = subprocess.Popen(
            ["redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
             "--port", str(self.redis_port), "--dir", self.dir, "--logfile", redis_log],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        open(redis_log, "a").close()
        wait("redis-server", lambda: redis_ping(self.redis_port), self.redis, redis_log)
        config = os.path.join(self.dir, "runtime", "ratelimit", "config")
        os.makedirs(config)
        shutil.copy(os.path.join(run.ROOT, "envoy", "ratelimit", "config", "apim.yaml"), config)
        with open(os.path.join(config, "native.yaml"), "w") as f:
            f.write(NATIVE_DOMAIN)
        env = {
            "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": f"127.0.0.1:{self.redis_port}",
            "RUNTIME_ROOT": os.path.join(self.dir, "runtime"), "RUNTIME_SUBDIRECTORY": "ratelimit",
            "RUNTIME_APPDIRECTORY": "config", "RUNTIME_WATCH_ROOT": "false", "RUNTIME_IGNOREDOTFILES": "true",
            "USE_STATSD": "false", "DISABLE_STATS": "true", "LOG_LEVEL": "warn",
            "HOST": "127.0.0.1", "PORT": str(self.http_port), "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": str(self.grpc_port), "DEBUG_HOST": "127.0.0.1", "DEBUG_PORT": str(self.debug_port),
        }
        log = os.path.join(self.dir, "ratelimit.log")
        self.service = subprocess.Popen([SERVICE_BIN], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        wait("envoyproxy/ratelimit", lambda: http_ok(self.http_port, "/healthcheck"), self.service, log)

    def flush(self):
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=5) as s:
            s.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
            s.recv(16)

    def cpu_seconds(self):
        """CPU time the service and Redis have used (user + system)."""
        return sum(self.run.cpu_seconds(proc.pid) for proc in (self.service, self.redis))

    def stop(self):
        for proc in (self.service, self.redis):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def rls_cluster(port):
    return {
        "name": "rls", "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }},
        "load_assignment": {"cluster_name": "rls", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def filter_config(mode, limit, window_s):
    policy = {"requests": limit, "per": "second", "unit_count": window_s} if window_s != 60 else {"requests": limit, "per": "minute"}
    config = {
        "apis": [{"name": "Bench", "context": "/bench", "version": "1.0.0", "security": [],
                  "endpoints": {"production": "unused"},
                  "resources": [{"method": "GET", "path": "/items", "policy": "P"}]}],
        "policies": {"P": policy},
    }
    if mode in ("leased", "strict"):
        config["throttling"] = {"rate_limit_service": {"cluster": "rls", "counting": mode, "timeout_ms": 1000}}
    return config


def native_ratelimit():
    return [{
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": "native",
            "timeout": "1s",
            "rate_limits": [{"actions": [{"generic_key": {"descriptor_value": "bench"}}]}],
            "rate_limit_service": {"grpc_service": {"envoy_grpc": {"cluster_name": "rls"}}, "transport_api_version": "V3"},
        },
    }]


class Pair:
    """Two Envoy nodes running the same filter chain, one per core."""

    def __init__(self, run, engine, mode, limit, window_s=60):
        self.run = run
        filters = native_ratelimit() if mode == "native" else run.wasm_filter(filter_config(mode, limit, window_s))
        clusters = [rls_cluster(engine.grpc_port)]
        # Routes go to an upstream (a listener of the same Envoy) in every mode: Envoy's own
        # rate-limit filter acts only on routes to a cluster.
        self.nodes = [run.Envoy(filters, f"{mode}-{core}", core=str(core), clusters=clusters, upstream=True) for core in (0, 1)]

    def calls(self):
        total = 0
        for node in self.nodes:
            with urllib.request.urlopen(f"http://127.0.0.1:{node.admin}/stats?filter=cluster.rls.upstream_rq_total") as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("cluster.rls.upstream_rq_total:"):
                        total += int(line.split(":")[1])
        return total

    def cpu_seconds(self):
        """CPU time both nodes have used (all threads)."""
        return sum(self.run.cpu_seconds(node.proc.pid) for node in self.nodes)

    def stop(self):
        for node in self.nodes:
            node.stop()


def wrk_both(run, pair, seconds, only_first_for=None):
    """Both nodes loaded at once, one wrk each (half the connections each). With
    `only_first_for`, the second node's load stops after that many seconds."""
    procs = []
    for index, node in enumerate(pair.nodes):
        duration = only_first_for if (only_first_for and index == 1) else seconds
        args = ["wrk", "-t1", f"-c{max(1, run.CONNECTIONS // 2)}", f"-d{duration}s", f"http://127.0.0.1:{node.port}{run.PATH}"]
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out = proc.communicate()[0]

        requests = int(re.search(r"(\d+) requests in", out).group(1))
        rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        socket_errors = sum(int(n) for n in errors.groups()) if errors else 0
        # An admission count is only as good as the answers counted (as run.verify_round).
        if socket_errors * 1000 > requests:
            raise SystemExit(f"cluster: {socket_errors} socket errors in {requests} requests")
        results.append({"requests": requests, "rps": rps, "non2xx": int(non2xx.group(1)) if non2xx else 0})
    return results


def throughput(run, engine):
    modes = [("local", "per node (shared data)"), ("leased", "leased (this filter)"),
             ("strict", "strict: one call per request (this filter)"), ("native", "Envoy's `ratelimit` filter: one call per request")]
    pairs = {mode: Pair(run, engine, mode, HUGE) for mode, _ in modes}
    try:
        requests = {mode: 0 for mode, _ in modes}
        cpu = {mode: 0.0 for mode, _ in modes}
        node_cpu = {mode: 0.0 for mode, _ in modes}
        for mode, _ in modes:
            requests[mode] += sum(r["requests"] for r in wrk_both(run, pairs[mode], run.WARMUP))
        warm_up = dict(requests)
        rounds = {mode: [] for mode, _ in modes}
        for _ in range(run.ROUNDS):
            for mode, _ in modes:
                before, nodes_before = engine.cpu_seconds(), pairs[mode].cpu_seconds()
                result = wrk_both(run, pairs[mode], run.SECONDS)
                cpu[mode] += engine.cpu_seconds() - before
                node_cpu[mode] += pairs[mode].cpu_seconds() - nodes_before
                if any(r["non2xx"] for r in result):
                    raise SystemExit(f"cluster {mode}: non-2xx answers below the limit")
                requests[mode] += sum(r["requests"] for r in result)
                rounds[mode].append(sum(r["rps"] for r in result))
        out = {}
        for mode, label in modes:
            measured = sum(r for r in rounds[mode]) * run.SECONDS
            answered = max(1, requests[mode] - warm_up[mode])
            out[mode] = {
                "label": label,
                "rps": statistics.median(rounds[mode]),
                "rounds": [round(r) for r in rounds[mode]],
                "calls_per_request": pairs[mode].calls() / max(1, requests[mode]),
                "engine_cpu_us": 1e6 * cpu[mode] / max(1.0, measured),
                "node_cpu_us": 1e6 * node_cpu[mode] / answered,
            }
            print(f"cluster {label:<50} {out[mode]['rps']:>10.0f} req/s  {out[mode]['calls_per_request']:.4f} calls/request", flush=True)
        return out
    finally:
        for pair in pairs.values():
            pair.stop()


def until_window_start(offset):
    now = time.time()
    time.sleep(WINDOW - now % WINDOW + offset)


def exactness(run, engine, mode, limit, second_node_seconds=None):
    pair = Pair(run, engine, mode, limit, window_s=WINDOW)
    try:
        engine.flush()
        until_window_start(0.3)
        calls = pair.calls()
        results = wrk_both(run, pair, WINDOW - 1, only_first_for=second_node_seconds)
        total = sum(r["requests"] for r in results)
        admitted = total - sum(r["non2xx"] for r in results)
        out = {"mode": mode, "limit": limit, "requests": total, "admitted": admitted,
               "calls_per_request": (pair.calls() - calls) / max(1, total),
               "second_node_s": second_node_seconds}
        print(f"cluster exactness {mode}: {admitted} admitted of {total} for a limit of {limit}", flush=True)
        return out
    finally:
        pair.stop()


def bench(run):
    global SERVICE_BIN
    SERVICE_BIN = os.path.join(run.ROOT, ".tools", "bin", "service_cmd")
    if not os.path.exists(SERVICE_BIN) or shutil.which("redis-server") is None:
        raise SystemExit("the cluster scenario needs envoyproxy/ratelimit and Redis: run `make bench`")
    engine = Engine(run)
    try:
        results = {"throughput": throughput(run, engine)}
        results["exact"] = [exactness(run, engine, mode, EXACT_LIMIT) for mode in ("leased", "strict")]
        both_rps = results["throughput"]["leased"]["rps"]
        stranded_limit = max(EXACT_LIMIT, int(both_rps * (WINDOW - 1) * STRANDED_SHARE) // 100 * 100)
        results["stranded"] = exactness(run, engine, "leased", stranded_limit, second_node_seconds=1)
        return results
    finally:
        engine.stop()


def under_admission(s, verdict):
    """The stranded-tokens line: what the limit lost when a node's traffic stopped while it held
    tokens, against the stated bound; measurable only when the demand exceeded the limit."""
    bound = ("the stated bound: one and a half blocks held by the node whose traffic stopped, 150 with `lease_max` 100,"
             " plus its worker's block of the node's tokens, at most half of what the node held, 75, plus fewer than"
             " `lease_max` lost to one whole block refused near the limit: 324")
    refused = s["requests"] - s["admitted"]
    if refused == 0:
        return (f"- Under-admission when a node's traffic stops while it holds tokens: not measured, the demand"
                f" ({s['requests']}) did not reach the limit ({s['limit']}); {bound}.")
    lost = s["limit"] - s["admitted"]
    return (f"- Under-admission when a node's traffic stops while it holds tokens: {lost} of {s['limit']}, with"
            f" {refused} requests refused ({bound}: {verdict(lost <= 324)}).")


def report(results, verdict):
    t = results["throughput"]
    local = t["local"]["rps"]
    lines = [
        "## Across Envoy nodes",
        "",
        "Two Envoy processes (`--concurrency 1`, one on each core) sharing one envoyproxy/ratelimit and"
        " one Redis (both unpinned), each node loaded by its own wrk (half the connections each); the"
        " figures are the two nodes' sum. Routes go to an upstream (a second listener of the same Envoy)"
        " in every mode, as Envoy's own rate-limit filter needs one, so these figures are not comparable"
        " with the tables above. Calls per request are the nodes' calls to the service over"
        " all requests of the run; engine CPU is the service's and Redis's CPU time per request; node CPU is"
        " the two Envoys' CPU time per request answered in the rounds (`by CPU`: per-node counting's over this"
        " row's, which reads through the load on the machine: the nodes, the service, Redis and wrk share two cores).",
        "",
        "| counting | requests/s | relative to per node | node CPU µs per request | by CPU | service calls per request |"
        " engine CPU µs per request | rounds (req/s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, x in t.items():
        lines.append(
            f"| {x['label']} | {x['rps']:.0f} | {x['rps'] / local:.3f} | {x['node_cpu_us']:.1f} |"
            f" {t['local']['node_cpu_us'] / max(x['node_cpu_us'], 1e-9):.3f} | {x['calls_per_request']:.4f} |"
            f" {x['engine_cpu_us']:.1f} | {', '.join(map(str, x['rounds']))} |"
        )
    leased = t["leased"]
    lines += [
        "",
        f"- Leased counting, far below the limit: {leased['calls_per_request']:.4f} calls per request"
        f" (target <= 0.1: {verdict(leased['calls_per_request'] <= 0.1)}); throughput {leased['rps'] / local:.3f} of"
        f" per-node counting (target >= 0.8: {verdict(leased['rps'] / local >= 0.8)}; by CPU per request"
        f" {t['local']['node_cpu_us'] / max(leased['node_cpu_us'], 1e-9):.3f}), {leased['rps'] / t['strict']['rps']:.2f}x"
        f" strict counting and {leased['rps'] / t['native']['rps']:.2f}x Envoy's own filter.",
        "",
        f"Exactness: a limit of N per {WINDOW}-second window, both nodes loaded for {WINDOW - 1} s inside one window"
        " (demand far above N).",
        "",
        "| counting | N | requests | admitted | calls per request |",
        "|---|---|---|---|---|",
    ]
    for x in results["exact"] + [results["stranded"]]:
        label = x["mode"] if not x["second_node_s"] else f"{x['mode']}, second node stops after {x['second_node_s']} s"
        lines.append(f"| {label} | {x['limit']} | {x['requests']} | {x['admitted']} | {x['calls_per_request']:.4f} |")
    overshoot = [x for x in results["exact"] + [results["stranded"]] if x["admitted"] > x["limit"]]
    s = results["stranded"]
    below = [f"{x['mode']} (N {x['limit']}, {x['requests']} requests)" for x in results["exact"] + [s] if x["requests"] <= x["limit"]]
    lines += [
        "",
        f"- Never more than N: {verdict(not overshoot)}. With demand on both nodes to the end, leased counting admitted"
        f" {results['exact'][0]['admitted']} of {EXACT_LIMIT}."
        + ("" if not below else " Not tested where the demand did not exceed N: " + ", ".join(below) + "."),
        under_admission(s, verdict),
        "",
    ]
    return lines
