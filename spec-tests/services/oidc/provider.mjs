// An OpenID Connect provider for the single sign-on tests: panva's oidc-provider (certified)
// on a free loopback port, with the clients and people of a JSON file, RS256 keys made at
// start, PKCE required, consent granted automatically, and a plain login form that tests
// fill in over HTTP (POST /interaction/<uid>/login with `login` and `password`).
//
//   node provider.mjs CONFIG.json [PORT]   prints {"ready":true,"issuer":...} once listening
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const people = config.people ?? [];

// Listen first: the issuer carries the port.
const server = http.createServer();
const port = Number(process.argv[3] ?? 0);
await new Promise((ok, fail) => server.once('error', fail).listen(port, '127.0.0.1', ok));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const provider = new Provider(issuer, {
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' }] },
  clients: config.clients.map((client) => ({
    client_id: client.client_id,
    client_secret: client.client_secret,
    redirect_uris: client.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  })),
  pkce: { required: () => true },
  // The claims of the requested scopes go into the ID token itself.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'roles'],
    email: ['email', 'email_verified'],
  },
  ttl: { AuthorizationCode: 60, AccessToken: 3600, IdToken: 3600, Grant: 3600, Interaction: 600, Session: 3600 },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const person = people.find((p) => p.sub === sub);
    return person && { accountId: person.sub, claims: async () => ({ sub: person.sub, ...person.claims }) };
  },
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.account.accountId,
    });
    grant.addOIDCScope([...ctx.oidc.requestParamOIDCScopes].join(' '));
    await grant.save();
    return grant;
  },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
function form(res, status, uid, message) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!DOCTYPE html><html><body>${message ? `<p id="error">${escape(message)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<input name="login"><input name="password" type="password"><button>Sign in</button></form></body></html>`);
}
function readForm(req) {
  return new Promise((ok, fail) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => { body += d; if (body.length > 100000) req.destroy(); })
      .on('end', () => ok(new URLSearchParams(body)))
      .on('error', fail);
  });
}

const oidc = provider.callback();
server.on('request', async (req, res) => {
  const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(new URL(req.url, issuer).pathname);
  if (!match) return oidc(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== match[1]) throw new Error('interaction mismatch');
    if (req.method === 'GET' && !match[2]) return form(res, 200, match[1]);
    if (req.method === 'POST' && match[2]) {
      const sent = await readForm(req);
      const person = people.find((p) => p.login === sent.get('login') && p.password === sent.get('password'));
      if (!person) return form(res, 401, match[1], 'Invalid login or password');
      return provider.interactionFinished(req, res, { login: { accountId: person.sub } }, { mergeWithLastSubmission: false });
    }
    res.writeHead(405).end();
  } catch (error) {
    res.writeHead(400, { 'content-type': 'text/plain' }).end(`interaction error: ${error.message}\n`);
  }
});

console.log(JSON.stringify({ ready: true, issuer }));
process.on('SIGTERM', () => process.exit(0));
