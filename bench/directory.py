"""The control-plane scenario of `make bench`: the directory read from a WSO2 control plane (the
stand-in of tests/cp, serving WSO2's shapes) with 10 and with 100,000 generated applications, key
mappings and subscriptions. Per size: how long the full load took (the filter's own log line),
Envoy's RSS once loaded (`--concurrency 1` and `--concurrency 2`), and requests per second with a
JWT whose client id the control plane maps (interleaved rounds, as the other tables).
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import time
import urllib.request

SIZES = (10, 100_000)

# As envoy/examples/control-plane/envoy.yaml: Envoy gives tcmalloc's free pages back to the system,
# 8 MiB a second. A full load buffers each list's answer whole (20 MB with 100,000 entries) and
# frees it once taken; without this Envoy keeps those pages (its default), and the RSS with them is
# reported beside.
RELEASE_FREE_PAGES = {"memory_allocator_manager": {"bytes_to_release": 8 * 1024 * 1024, "memory_release_interval": "1s"}}


def settled_rss_kib(envoy, timeout_s=20):
    """Envoy's RSS once it has settled: read every half second until it moved less than 256 KiB,
    up or down, over the last 2 s (free pages go back to the system a few MiB a second; a rising
    RSS is not settled either)."""
    reads = [envoy.rss_kib()]
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        time.sleep(0.5)
        reads.append(envoy.rss_kib())
        if len(reads) > 4 and abs(reads[-5] - reads[-1]) < 256:
            break
    return reads[-1]


class ControlPlane:
    def __init__(self, run, scale):
        self.port = run.free_port()
        self.proc = subprocess.Popen(
            ["node", os.path.join(run.ROOT, "tests", "cp", "server.mjs"), "--port", str(self.port), "--scale", str(scale)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_admin/stats", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        # The bench token's client: a key mapping to the fixtures' WebApp (an Unlimited application
        # policy) and an Unlimited subscription to PizzaShackAPI, so that nothing throttles.
        web_app = "5b2d7c1e-3a4f-4e6d-9b8c-7a6f5e4d3c2b"
        self.admin("add/application-key-mappings", {"applicationId": 4, "applicationUUID": web_app,
                   "consumerKey": "bench-client", "keyType": "PRODUCTION", "keyManager": "Resident Key Manager"})
        self.admin("add/subscriptions", {"subscriptionUUID": "bench", "subscriptionId": 99, "policyId": "Unlimited",
                   "apiUUID": "6a1bdb2e-2c5d-4f7a-9d3c-0d7b1c2f9e11", "apiId": 2, "applicationUUID": web_app,
                   "appId": 4, "subscriptionState": "UNBLOCKED"})

    def admin(self, action, item):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/_admin/{action}",
                                         data=json.dumps(item).encode(), method="POST")
        urllib.request.urlopen(request, timeout=5).read()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def filter_config(creds):
    return {
        "key_managers": [{"name": "Resident Key Manager", "issuer": creds["issuer"], "audiences": ["bench"],
                          "jwks": {"keys": [creds["jwk"]]}}],
        "control_plane": {"cluster": "cp", "username": "admin", "password": "admin", "refresh_s": 3600,
                          "endpoints": {"PizzaShackAPI": {"production": "unused"}}},
    }


def cp_cluster(port):
    return {"name": "cp", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": "cp", "endpoints": [
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def loaded_ms(envoy):
    """The first full load's time and, of it, the time spent waiting for the control plane's
    answers (the filter's own log line)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        found = re.findall(r"control plane loaded in ([0-9]+) ms \(([0-9]+) ms of it waiting", open(envoy.log).read())
        if found:
            return int(found[0][0]), int(found[0][1])
        time.sleep(0.2)
    raise SystemExit("the control plane load did not finish within 120 s")


def bench(run, creds):
    if shutil.which("node") is None:
        raise SystemExit("the control-plane scenario needs Node.js")
    bearer = [("Authorization", f"Bearer {creds['token']}")]
    path = "/pizzashack/1.0.0/menu"
    planes = {size: ControlPlane(run, size) for size in SIZES}
    envoys, results = {}, {}
    try:
        for size, cp in planes.items():
            envoys[size] = run.Envoy(run.wasm_filter(filter_config(creds)), f"cp-{size}", clusters=[cp_cluster(cp.port)],
                                     extra=RELEASE_FREE_PAGES)
            load_ms, waiting_ms = loaded_ms(envoys[size])
            results[size] = {"load_ms": load_ms, "waiting_ms": waiting_ms}
            run.check(envoys[size].port, bearer, 200, path=path)
        for size in SIZES:
            run.wrk(envoys[size].port, bearer, run.WARMUP, path=path)
        rounds = {size: [] for size in SIZES}
        for _ in range(run.ROUNDS):
            for size in SIZES:
                result = run.wrk(envoys[size].port, bearer, run.SECONDS, path=path)
                run.verify_round(f"control plane {size}", result, 200)
                rounds[size].append(result["rps"])
        for size in SIZES:
            results[size]["rps"] = statistics.median(rounds[size])
            results[size]["rounds"] = [round(r) for r in rounds[size]]
            results[size]["rss_kib"] = settled_rss_kib(envoys[size])
        # RSS with two workers (three VMs): the directory is once per Envoy, not once per VM. Then
        # the same with Envoy's default, which keeps the freed pages.
        for key, extra in (("rss2_kib", RELEASE_FREE_PAGES), ("rss2_kept_kib", None)):
            for size, cp in planes.items():
                envoy = run.Envoy(run.wasm_filter(filter_config(creds)), f"cp2-{size}", clusters=[cp_cluster(cp.port)],
                                  concurrency=2, extra=extra)
                try:
                    loaded_ms(envoy)
                    run.check(envoy.port, bearer, 200, path=path)
                    results[size][key] = settled_rss_kib(envoy)
                finally:
                    envoy.stop()
        for size in SIZES:
            x = results[size]
            print(f"control plane {size:>7}: loaded in {x['load_ms']} ms, RSS {x['rss_kib'] / 1024:.1f} MiB"
                  f" ({x['rss2_kib'] / 1024:.1f} with two workers, {x['rss2_kept_kib'] / 1024:.1f} keeping free pages),"
                  f" {x['rps']:.0f} req/s", flush=True)
        return results
    finally:
        for envoy in envoys.values():
            envoy.stop()
        for cp in planes.values():
            cp.stop()


def report(results, verdict):
    small, big = results[SIZES[0]], results[SIZES[-1]]
    delta1 = (big["rss_kib"] - small["rss_kib"]) / 1024
    delta2 = (big["rss2_kib"] - small["rss2_kib"]) / 1024
    kept = (big["rss2_kept_kib"] - small["rss2_kept_kib"]) / 1024
    ratio = big["rps"] / small["rps"] if small["rps"] else float("nan")
    lines = [
        "## Directory from a WSO2 control plane",
        "",
        "The directory read from the control-plane stand-in of `tests/cp` (WSO2's shapes) with 10 and with"
        " 100,000 generated applications, key mappings and subscriptions; a JWT whose client id the control plane"
        " maps. Load time is the filter's own log line (all nine resources), split into the time spent waiting for"
        " the control plane's answers (the stand-in building and sending them, Envoy receiving them) and the filter's"
        " own time taking them; RSS is the whole Envoy once loaded and settled, with the example's"
        " `memory_allocator_manager` (Envoy gives free pages back to the system, 8 MiB a second), and beside it"
        " with Envoy's default, which keeps them (two workers).",
        "",
        "| entries | full load ms | waiting for answers ms | taking them ms | RSS MiB (1 worker) | RSS MiB (2 workers) | RSS MiB (2 workers, free pages kept) | requests/s | rounds (req/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in SIZES:
        x = results[size]
        lines.append(f"| {size:,} | {x['load_ms']} | {x['waiting_ms']} | {x['load_ms'] - x['waiting_ms']} | {x['rss_kib'] / 1024:.1f} | {x['rss2_kib'] / 1024:.1f} | {x['rss2_kept_kib'] / 1024:.1f} | {x['rps']:.0f} |"
                     f" {', '.join(map(str, x['rounds']))} |")
    lines += [
        "",
        f"- 100,000 entries: full load {big['load_ms']} ms (target < 2000: {verdict(big['load_ms'] < 2000)}; of it"
        f" {big['waiting_ms']} ms waiting for the stand-in's answers and {big['load_ms'] - big['waiting_ms']} ms the"
        f" filter taking them); memory"
        f" {delta1:.1f} MiB over 10 entries with one worker, {delta2:.1f} MiB with two (target < 64 whatever the worker"
        f" count: {verdict(max(delta1, delta2) < 64)}; {kept:.1f} MiB with two workers when Envoy keeps its free"
        f" pages, its default: the answers Envoy buffered whole); throughput {ratio:.3f} of 10 entries (target >= 0.95:"
        f" {verdict(ratio >= 0.95)}).",
        "",
    ]
    return lines
