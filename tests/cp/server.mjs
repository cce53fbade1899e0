// A stand-in for a WSO2 API Manager 4.x control plane's internal data API, for the integration
// tests (a real API Manager cannot be installed on the project's machines). It serves the JSON
// in ./fixtures, which follows WSO2's published shapes (the DTOs of carbon-apimgt's
// org.wso2.carbon.apimgt.internal.service: list envelopes with `count`, `list` and a null
// `pagination`; bare arrays for /revokedjwt and /keymanagers; a bare object for /block), and
// answers queries as WSO2 does:
//
//   GET /internal/data/v1/apis?gatewayLabel=L[&apiId=U | &context=C&version=V]
//   GET /internal/data/v1/applications[?appId=N]
//   GET /internal/data/v1/subscriptions[?apiUUID=&applicationUUID= | ?apiId=&appId=]   (a single id is ignored)
//   GET /internal/data/v1/application-key-mappings[?consumerKey=&keymanager=]          (`+` is a space)
//   GET /internal/data/v1/{subscription,application,api}-policies[?policyName=]
//   GET /internal/data/v1/{block,revokedjwt,keymanagers}
//
// "Not found" is a 200 with an empty list. HTTP Basic credentials are required (401 otherwise).
//
//   node server.mjs --port N [--user admin --password admin] [--scale N]
//
// --scale N adds N generated applications, each with a key mapping (`gen-client-<i>`) and a
// subscription to the first API, for load tests. Test controls (no credentials):
//
//   POST /_admin/add/<resource>               body: an item, appended to the list
//   POST /_admin/update/<resource>?<field>=<value>   body: fields merged into matching items
//   POST /_admin/delete/<resource>?<field>=<value>
//   POST /_admin/set/<resource>               body: the whole answer (block, revokedjwt)
//   POST /_admin/mode                         body: {"mode": "ok"|"error"|"garbage"|"slow"|"padded", "delay_ms": N, "pad_bytes": N}
//                                             (padded: the right answer followed by pad_bytes spaces)
//   GET  /_admin/stats                        requests per resource, full loads and lookups apart
//
// Prints `READY <port>` once listening.

import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    user: { type: 'string', default: 'admin' },
    password: { type: 'string', default: 'admin' },
    scale: { type: 'string', default: '0' },
  },
});
const port = Number(args.port);
const here = path.dirname(new URL(import.meta.url).pathname);
const resources = [
  'apis', 'applications', 'subscriptions', 'application-key-mappings', 'subscription-policies',
  'application-policies', 'api-policies', 'block', 'revokedjwt', 'keymanagers',
];
const data = {};
for (const name of resources) {
  data[name] = JSON.parse(fs.readFileSync(path.join(here, 'fixtures', `${name}.json`), 'utf8'));
}

const scale = Number(args.scale);
if (scale > 0) {
  const api = data.apis.list[0];
  for (let i = 0; i < scale; i++) {
    const uuid = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    data.applications.list.push({ uuid, id: 100000 + i, name: `Gen${i}`, subName: 'gen', policy: '50PerMin',
      tokenType: 'JWT', groupIds: [], attributes: {}, organization: 'carbon.super' });
    data['application-key-mappings'].list.push({ applicationId: 100000 + i, applicationUUID: uuid,
      consumerKey: `gen-client-${i}`, keyType: 'PRODUCTION', keyManager: 'Resident Key Manager' });
    data.subscriptions.list.push({ subscriptionUUID: `sub-${uuid}`, subscriptionId: 100000 + i, policyId: 'Gold',
      apiUUID: api.uuid, apiId: api.apiId, applicationUUID: uuid, appId: 100000 + i, subscriptionState: 'UNBLOCKED' });
  }
}
for (const name of resources) {
  if (data[name].list) data[name].count = data[name].list.length;
}

let mode = { mode: 'ok', delay_ms: 0 };
const stats = {};
const count = (key) => { stats[key] = (stats[key] || 0) + 1; };

const envelope = (list) => ({ count: list.length, list, pagination: null });

function answer(resource, query) {
  const q = (name) => query.get(name);
  const all = data[resource];
  switch (resource) {
    case 'apis': {
      let list = all.list;
      if (q('apiId')) list = list.filter((a) => a.uuid === q('apiId'));
      else if (q('context') && q('version')) list = list.filter((a) => a.context === q('context') && a.version === q('version'));
      return envelope(list);
    }
    case 'applications':
      if (Number(q('appId')) > 0) {
        // WSO2 lists an application once per attribute row: dedupe only for single look-ups.
        const found = all.list.filter((a) => a.id === Number(q('appId')));
        return envelope(found.slice(0, 1));
      }
      return envelope(all.list);
    case 'subscriptions':
      if (q('apiUUID') && q('applicationUUID')) {
        return envelope(all.list.filter((s) => s.apiUUID === q('apiUUID') && s.applicationUUID === q('applicationUUID')));
      }
      if (q('apiId') && q('appId')) {
        return envelope(all.list.filter((s) => s.apiId === Number(q('apiId')) && s.appId === Number(q('appId'))));
      }
      return envelope(all.list);
    case 'application-key-mappings':
      if (q('consumerKey') !== null) {
        return envelope(all.list.filter((m) => m.consumerKey === q('consumerKey') && m.keyManager === q('keymanager')));
      }
      return envelope(all.list);
    case 'subscription-policies':
    case 'application-policies':
    case 'api-policies':
      return q('policyName') ? envelope(all.list.filter((p) => p.name === q('policyName'))) : envelope(all.list);
    default:
      return all;
  }
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

function matches(item, query) {
  for (const [field, value] of query) {
    if (String(item[field]) !== value) return false;
  }
  return true;
}

async function admin(req, res, url) {
  const [, , action, resource] = url.pathname.split('/');
  const body = req.method === 'POST' ? await readBody(req) : '';
  const reply = (status, json) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(json));
  };
  if (action === 'stats') return reply(200, stats);
  if (action === 'mode') {
    mode = { mode: 'ok', delay_ms: 0, pad_bytes: 0, ...JSON.parse(body) };
    return reply(200, mode);
  }
  if (!resources.includes(resource)) return reply(404, { error: `no resource ${resource}` });
  const target = data[resource];
  switch (action) {
    case 'add':
      target.list.push(JSON.parse(body));
      break;
    case 'update':
      for (const item of target.list) if (matches(item, url.searchParams)) Object.assign(item, JSON.parse(body));
      break;
    case 'delete':
      target.list = target.list.filter((item) => !matches(item, url.searchParams));
      break;
    case 'set':
      data[resource] = JSON.parse(body);
      break;
    default:
      return reply(404, { error: `no action ${action}` });
  }
  if (data[resource].list) data[resource].count = data[resource].list.length;
  return reply(200, { ok: true });
}

const expected = `Basic ${Buffer.from(`${args.user}:${args.password}`).toString('base64')}`;
const prefix = '/internal/data/v1/';

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname.startsWith('/_admin/')) return admin(req, res, url);
  if (!url.pathname.startsWith(prefix)) {
    res.writeHead(404);
    return res.end();
  }
  const resource = url.pathname.slice(prefix.length);
  count(`${resource}${url.search ? '?' : ''}`);
  if (req.headers.authorization !== expected) {
    res.writeHead(401, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ code: 401, message: '', description: 'Unauthenticated request', moreInfo: '', error: [] }));
  }
  if (!resources.includes(resource)) {
    res.writeHead(404);
    return res.end();
  }
  if (mode.mode === 'slow') await new Promise((r) => setTimeout(r, mode.delay_ms || 30000));
  if (mode.mode === 'error') {
    res.writeHead(500, { 'content-type': 'application/json' });
    return res.end('{"code":500,"message":"Internal server error"}');
  }
  if (mode.mode === 'garbage') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end('{"count":1,"list":[{"uuid": tru');
  }
  // URLSearchParams decodes `+` as a space, as WSO2's server does.
  let body = JSON.stringify(answer(resource, url.searchParams));
  if (mode.mode === 'padded') body += ' '.repeat(mode.pad_bytes || 0);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});

server.listen(port, '127.0.0.1', () => process.stdout.write(`READY ${port}\n`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
