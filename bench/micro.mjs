// The filter's own cost per request, without Envoy: the .wasm runs in Node's V8 (the engine
// Envoy embeds) behind a minimal proxy-wasm host, and each scenario drives a request's callbacks
// (context create, request headers, response headers, response body, delete) in a loop. Reports
// microseconds per request and the host calls each request makes, by kind: what the filter's
// code and its ABI traffic cost, free of the machine noise an Envoy benchmark carries.
//
// Usage: node bench/micro.mjs <filter.wasm> <scenarios.json> [seconds per scenario]
// scenarios.json: [{"name": ..., "config": {...}, "headers": [[name, value], ...]}, ...]
// The host answers every header read from the request's headers, ":status" 200 for the
// response, an in-memory shared data, and nothing for properties.
//
// V8 runs the module as Envoy runs it: compiled by its optimizing compiler only. Envoy's wasm host
// turns V8's baseline compiler (Liftoff) off; Node's default starts every function there and
// recompiles the hot ones later, which left a long-running function (RSA's Montgomery
// multiplication) in baseline code for part of the run.

import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--no-liftoff");

const [wasmPath, scenariosPath, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg || 2);
const scenarios = JSON.parse(readFileSync(scenariosPath, "utf8"));
const module = new WebAssembly.Module(readFileSync(wasmPath));
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function instantiate(config, requestHeaders) {
  let instance;
  const calls = {};
  const count = (name) => { calls[name] = (calls[name] || 0) + 1; };
  const shared = new Map();
  let cas = 1;
  const memory = () => new DataView(instance.exports.memory.buffer);
  const bytes = (ptr, len) => new Uint8Array(instance.exports.memory.buffer, ptr, len);
  const text = (ptr, len) => decoder.decode(bytes(ptr, len));
  // Hands data to the module the way Envoy does: through the module's allocator.
  const give = (data, ptrOut, sizeOut) => {
    const ptr = data.length ? instance.exports.proxy_on_memory_allocate(data.length) : 0;
    if (data.length) bytes(ptr, data.length).set(data);
    memory().setUint32(ptrOut, ptr, true);
    memory().setUint32(sizeOut, data.length, true);
    return 0;
  };
  const serializePairs = (pairs) => {
    const encoded = pairs.map(([k, v]) => [encoder.encode(k), encoder.encode(v)]);
    let size = 4 + encoded.length * 8;
    for (const [k, v] of encoded) size += k.length + v.length + 2;
    const out = new Uint8Array(size);
    const view = new DataView(out.buffer);
    view.setUint32(0, encoded.length, true);
    let at = 4;
    for (const [k, v] of encoded) { view.setUint32(at, k.length, true); view.setUint32(at + 4, v.length, true); at += 8; }
    for (const [k, v] of encoded) { out.set(k, at); at += k.length + 1; out.set(v, at); at += v.length + 1; }
    return out;
  };
  const maps = { 0: requestHeaders, 2: [[":status", "200"], ["content-length", "2"]] };
  // Serialized once: the host's own work is not what is measured.
  const serialized = Object.fromEntries(Object.entries(maps).map(([map, pairs]) => [map, serializePairs(pairs)]));
  const values = Object.fromEntries(
    Object.entries(maps).map(([map, pairs]) => [map, new Map(pairs.map(([k, v]) => [k, encoder.encode(v)]))]),
  );
  const configBytes = encoder.encode(JSON.stringify(config));
  const env = {
    proxy_log: (level, ptr, len) => { count("log"); if (level >= 3) console.error(text(ptr, len)); return 0; },
    proxy_get_log_level: (out) => { count("get_log_level"); memory().setUint32(out, 2, true); return 0; },
    proxy_get_current_time_nanoseconds: (out) => {
      count("get_current_time");
      memory().setBigUint64(out, BigInt(Date.now()) * 1000000n, true);
      return 0;
    },
    proxy_set_tick_period_milliseconds: () => 0,
    proxy_get_buffer_bytes: (kind, start, max, ptrOut, sizeOut) => {
      count("get_buffer_bytes");
      if (kind !== 7) return 1;
      return give(configBytes.subarray(start, Math.min(configBytes.length, start + (max >>> 0))), ptrOut, sizeOut);
    },
    proxy_get_header_map_pairs: (map, ptrOut, sizeOut) => {
      count("get_header_map_pairs");
      return give(serialized[map] || serializePairs([]), ptrOut, sizeOut);
    },
    proxy_get_header_map_value: (map, keyPtr, keyLen, ptrOut, sizeOut) => {
      count("get_header_map_value");
      const found = values[map] && values[map].get(text(keyPtr, keyLen));
      return found ? give(found, ptrOut, sizeOut) : 1;
    },
    proxy_replace_header_map_value: () => { count("replace_header_map_value"); return 0; },
    proxy_remove_header_map_value: () => { count("remove_header_map_value"); return 0; },
    proxy_get_property: () => { count("get_property"); return 1; },
    proxy_set_property: () => { count("set_property"); return 0; },
    proxy_get_shared_data: (keyPtr, keyLen, ptrOut, sizeOut, casOut) => {
      count("get_shared_data");
      const entry = shared.get(text(keyPtr, keyLen));
      if (!entry) return 1;
      memory().setUint32(casOut, entry.cas, true);
      return give(entry.value, ptrOut, sizeOut);
    },
    proxy_set_shared_data: (keyPtr, keyLen, valuePtr, valueLen, expected) => {
      count("set_shared_data");
      const key = text(keyPtr, keyLen);
      const entry = shared.get(key);
      if (expected && entry && entry.cas !== expected) return 8;
      shared.set(key, { value: bytes(valuePtr, valueLen).slice(), cas: ++cas });
      return 0;
    },
    proxy_set_buffer_bytes: () => { count("set_buffer_bytes"); return 0; },
    proxy_continue_stream: () => 0,
    proxy_close_stream: () => { count("close_stream"); return 0; },
    proxy_send_local_response: () => { count("send_local_response"); return 0; },
    proxy_http_call: () => { count("http_call"); return 1; },
    proxy_grpc_call: () => { count("grpc_call"); return 1; },
    proxy_get_status: () => 1,
    proxy_set_effective_context: () => 0,
    proxy_define_metric: (kind, ptr, len, out) => { count("define_metric"); memory().setUint32(out, 1, true); return 0; },
    proxy_increment_metric: () => { count("increment_metric"); return 0; },
    proxy_call_foreign_function: () => { count("call_foreign_function"); return 0; },
  };
  const wasi = {
    random_get: (ptr, len) => { bytes(ptr, len).fill(7); return 0; },
    environ_get: () => 0,
    environ_sizes_get: (countOut, sizeOut) => { memory().setUint32(countOut, 0, true); memory().setUint32(sizeOut, 0, true); return 0; },
    fd_write: () => 0,
    proc_exit: () => { throw new Error("proc_exit"); },
  };
  instance = new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasi });
  const x = instance.exports;
  if (x._initialize) x._initialize();
  x.proxy_on_context_create(1, 0);
  if (x.proxy_on_configure(1, configBytes.length) !== 1) throw new Error("configuration refused");
  return { x, calls };
}

function run({ name, config, headers }) {
  const { x, calls } = instantiate(config, headers);
  let context = 2;
  const request = () => {
    const id = context++;
    x.proxy_on_context_create(id, 1);
    const action = x.proxy_on_request_headers(id, headers.length, 1);
    if (action !== 0) throw new Error(`${name}: the request was not forwarded (action ${action})`);
    if (x.proxy_on_response_headers) x.proxy_on_response_headers(id, 2, 0);
    if (x.proxy_on_response_body) x.proxy_on_response_body(id, 2, 1);
    if (x.proxy_on_delete) x.proxy_on_delete(id);
  };
  const warmup = Date.now() + 500;
  while (Date.now() < warmup) request();
  for (const key of Object.keys(calls)) delete calls[key];
  // Ten batches; the fastest batch is reported (interference from the rest of the machine only
  // ever slows a batch down), with the median beside it.
  let done = 0;
  const batches = [];
  for (let batch = 0; batch < 10; batch++) {
    let count = 0;
    const started = process.hrtime.bigint();
    const until = started + BigInt(Math.round((seconds / 10) * 1e9));
    let now = started;
    while (now < until) {
      for (let i = 0; i < 200; i++) request();
      count += 200;
      now = process.hrtime.bigint();
    }
    batches.push(Number(now - started) / 1e3 / count);
    done += count;
  }
  batches.sort((a, b) => a - b);
  const perRequest = Object.fromEntries(Object.entries(calls).map(([k, v]) => [k, +(v / done).toFixed(2)]));
  return { name, us: batches[0], median_us: batches[5], calls: perRequest };
}

const results = scenarios.map(run);
console.log(JSON.stringify(results));
