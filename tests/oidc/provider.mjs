// A real OpenID provider (npm `oidc-provider`, pinned in package-lock.json)
// for Paddock's integration tests, started headless by the test itself.
//
//   node provider.mjs CONFIG.json
//
// CONFIG.json: {
//   "port": 0,                      // 0: any free loopback port
//   "certFile": "...", "keyFile": "...",   // TLS (the issuer is https)
//   "keysDir": "...",               // signing keys, made on first use
//   "keys": [{"kid": "rsa-1", "kty": "RSA"}, {"kid": "ec-1", "kty": "EC"}],
//                                   // published in this order; the first signs
//   "clients": [{client_id, client_secret, redirect_uris, grant_types?}],
//   "users": {"alice": {"password": "...", "email": "...", "groups": [...], "disabled": false}}
// }
//
// `users` is read again at every login and refresh: rewriting the file
// changes a user's groups or disables them without a restart.
//
// Prints `LISTENING <port>` once it serves. Keys it makes are written to
// keysDir as `<kid>.jwk.json` (private JWK), `<kid>.pem` (PKCS#8) and
// `<kid>.pub.pem` (SPKI), so the test can sign crafted tokens with them;
// restarting with another `keys` list is a key rotation.
//
// Interactions are oidc-provider's own development interactions (a login
// form and a consent form); the users' claims come from `users`. The
// password grant is registered for the login conformance suite, as
// Keycloak's "direct access grants" offer it.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';

// Each startup step goes to stderr with its time since node started, so
// a start that stalls on a loaded machine says where.
const started = Date.now();
function step(what) {
  process.stderr.write(`${Date.now() - started} ms: ${what}\n`);
}

step('node started');
const { default: Provider, errors } = await import('oidc-provider');
step('oidc-provider loaded');

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
fs.mkdirSync(config.keysDir, { recursive: true });

// Keys come out of the generator as PEM and are read back into a new key
// object for the JWK: Node 20 can deadlock exporting a just-generated key
// as JWK when a garbage collection in the middle of the export frees the
// generator's job, whose destructor takes the mutex the export holds.
const PEM = {
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  publicKeyEncoding: { type: 'spki', format: 'pem' },
};

function signingKey({ kid, kty }) {
  const file = path.join(config.keysDir, `${kid}.jwk.json`);
  if (fs.existsSync(file)) {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  }
  const pair = kty === 'EC'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256', ...PEM })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048, ...PEM });
  const privateKey = crypto.createPrivateKey(pair.privateKey);
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: kty === 'EC' ? 'ES256' : 'RS256' };
  fs.writeFileSync(path.join(config.keysDir, `${kid}.pem`), pair.privateKey);
  fs.writeFileSync(path.join(config.keysDir, `${kid}.pub.pem`), pair.publicKey);
  fs.writeFileSync(file, JSON.stringify(jwk));
  step(`key ${kid} made`);
  return jwk;
}

const keys = config.keys.map(signingKey);
step(`keys ready: ${config.keys.map((k) => k.kid).join(', ')}`);
// Read at every use: a test changes a user's groups by rewriting the file.
function usersNow() {
  return JSON.parse(fs.readFileSync(process.argv[2], 'utf8')).users;
}

async function findAccount(ctx, sub) {
  const user = usersNow()[sub];
  if (!user || user.disabled) {
    return undefined;
  }
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        email: user.email,
        email_verified: true,
        name: user.name ?? sub,
        groups: user.groups ?? [],
      };
    },
  };
}

const server = https.createServer({
  cert: fs.readFileSync(config.certFile),
  key: fs.readFileSync(config.keyFile),
});

server.on('error', (error) => {
  step(`cannot listen on port ${config.port}: ${error.message}`);
  process.exit(1);
});
step(`listening on port ${config.port}`);
server.listen(config.port, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `https://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: config.clients.map((c) => ({
      grant_types: ['authorization_code', 'refresh_token', 'password'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...c,
    })),
    findAccount,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    // Keycloak, Dex and Okta put email and groups into the ID token too.
    conformIdTokenClaims: false,
    // Like Keycloak: a refresh token for every code exchange.
    issueRefreshToken: async () => true,
    pkce: { required: () => true },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    jwks: { keys },
    enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256'] },
    ttl: { IdToken: 3600, AccessToken: 3600, AuthorizationCode: 60, RefreshToken: 86400, Grant: 86400, Session: 86400, Interaction: 600 },
    features: { devInteractions: { enabled: true } },
  });
  provider.registerGrantType('password', async (ctx) => {
    const { username, password } = ctx.oidc.params;
    const user = usersNow()[username];
    const given = Buffer.from(password ?? '');
    const expected = Buffer.from(user?.password ?? '');
    if (!user || user.disabled || given.length === 0 || given.length !== expected.length
      || !crypto.timingSafeEqual(given, expected)) {
      throw new errors.InvalidGrant('invalid credentials');
    }
    const account = await findAccount(ctx, username);
    const scope = 'openid email profile groups';
    const token = new provider.IdToken({ ...(await account.claims()) }, { ctx });
    token.scope = scope;
    const idToken = await token.issue({ use: 'idtoken' });
    ctx.body = {
      token_type: 'Bearer',
      access_token: crypto.randomBytes(24).toString('base64url'),
      id_token: idToken,
      expires_in: 3600,
      scope,
    };
  }, ['username', 'password', 'scope']);
  server.on('request', provider.callback());
  step('provider ready');
  process.stdout.write(`LISTENING ${port}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
