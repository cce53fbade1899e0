// Local OAuth2/OIDC key manager for integration tests, built on oidc-provider v9.
//
//   node server.mjs --port N --keys path/to/jwks.json [--access-ttl 300]
//
// * Signing keys come from the private JWKS at --keys. If the file does not
//   exist, one RSA-2048 key (RS256, random hex kid) is generated and written
//   there first, so restarting with a new keys file rotates the key.
// * client_credentials tokens are issued for two resource servers, selected
//   by the `resource` token-endpoint parameter:
//     urn:apim:jwt    -> RS256 JWT access token (aud urn:apim:jwt) [default]
//     urn:apim:opaque -> opaque access token (introspectable)
// * GET /_stats returns {"introspections": N}: how many requests reached the
//   introspection endpoint since start.
// * Prints `READY <port>` on stdout once listening; exits cleanly on SIGTERM/SIGINT.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const RESOURCE_JWT = 'urn:apim:jwt';
const RESOURCE_OPAQUE = 'urn:apim:opaque';
const RESOURCE_SCOPES = 'menu:read order:write openid';
const CLIENT_SCOPES = 'menu:read order:write';
const INTROSPECTION_PATH = '/token/introspection';

function die(msg) {
  process.stderr.write(`km: ${msg}\n`);
  process.exit(2);
}

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    keys: { type: 'string' },
    'access-ttl': { type: 'string', default: '300' },
  },
  strict: true,
});

const port = Number(args.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) die('--port N is required (1-65535)');
if (!args.keys) die('--keys path/to/jwks.json is required');
const accessTtl = Number(args['access-ttl']);
if (!Number.isInteger(accessTtl) || accessTtl < 1) die('--access-ttl must be a positive integer (seconds)');

function loadOrCreateKeys(file) {
  if (!fs.existsSync(file)) {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = {
      ...privateKey.export({ format: 'jwk' }),
      kid: crypto.randomBytes(8).toString('hex'),
      alg: 'RS256',
      use: 'sig',
    };
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    fs.writeFileSync(file, `${JSON.stringify({ keys: [jwk] }, null, 2)}\n`, { mode: 0o600 });
  }
  let jwks;
  try {
    jwks = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    die(`cannot read keys file ${file}: ${err.message}`);
  }
  if (!Array.isArray(jwks?.keys) || jwks.keys.length === 0) die(`${file} is not a JWKS with at least one key`);
  for (const k of jwks.keys) {
    if (k.kty !== 'RSA' || !k.d || !k.kid) die(`${file}: every key must be a private RSA JWK with a kid`);
  }
  return jwks;
}

const jwks = loadOrCreateKeys(args.keys);
const issuer = `http://${HOST}:${port}`;

const client = (client_id, client_secret) => ({
  client_id,
  client_secret,
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: CLIENT_SCOPES,
});

const resourceServers = {
  [RESOURCE_JWT]: {
    scope: RESOURCE_SCOPES,
    audience: RESOURCE_JWT,
    accessTokenTTL: accessTtl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  },
  [RESOURCE_OPAQUE]: {
    scope: RESOURCE_SCOPES,
    audience: RESOURCE_OPAQUE,
    accessTokenTTL: accessTtl,
    accessTokenFormat: 'opaque',
  },
};

const provider = new Provider(issuer, {
  // No `adapter`: oidc-provider's built-in in-memory adapter is used.
  jwks,
  clients: [
    client('app1', 'app1-secret'),
    client('app2', 'app2-secret'),
    client('sandbox-app', 'sandbox-secret'),
    client('unsubscribed-app', 'unsubscribed-secret'),
    client('gateway', 'gateway-secret'),
  ],
  scopes: ['openid', 'menu:read', 'order:write'],
  claims: { openid: ['sub'] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  routes: { introspection: INTROSPECTION_PATH },
  ttl: {
    ClientCredentials: () => accessTtl,
    AccessToken: () => accessTtl,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Any authenticated (confidential) client may introspect any token;
      // the gateway introspects tokens issued to the app clients.
      allowedPolicy: async () => true,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf ?? RESOURCE_JWT,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        const info = resourceServers[resourceIndicator];
        if (!info) throw new errors.InvalidTarget();
        return info;
      },
      useGrantedResource: async () => true,
    },
  },
});

provider.on('server_error', (ctx, err) => {
  process.stderr.write(`km: server_error: ${err?.stack ?? err}\n`);
});

let introspections = 0;
const callback = provider.callback();

const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, issuer);
  if (pathname === '/_stats' && req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({ introspections }));
    return;
  }
  if (pathname === INTROSPECTION_PATH) introspections += 1;
  callback(req, res);
});

server.on('error', (err) => die(`listen failed: ${err.message}`));
server.listen(port, HOST, () => {
  process.stdout.write(`READY ${port}\n`);
});

let stopping = false;
function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
