// A real OpenID provider for the tests: the `oidc-provider` package (OpenID Certified), on
// loopback. Started by web/e2e/oidc.test.mjs and by the Rust integration tests (tests/it/sso.rs):
//
//   node web/e2e/oidc-provider.mjs --port <port> --app <app base URL>[,<another>...]
//
// prints `ready <issuer>` once it listens. Clients (each with every app's redirect URI):
//   emergence          / emergence-secret  -> <app>/auth/oidc/test/callback
//   emergence-wrongaud / wrongaud-secret   -> <app>/auth/oidc/wrongaud/callback
// `emergence-wrongaud` stands for a token minted for another audience: its token response is
// the provider's own, except that the id_token, re-signed with the provider's own key, names
// the audience `another-app`. Everything else (discovery, PKCE, codes single use, keys, login)
// is the package's own behaviour.
//
// Sign-in: GET /interaction/<uid> shows a one-field form ("login"), whose value becomes the
// subject; with `login_hint` on the authorization request it signs that subject in at once
// (the Rust tests have no browser). Consent is implied (first-party clients).
import http from 'node:http';
import { parseArgs } from 'node:util';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const { values } = parseArgs({
  options: { port: { type: 'string' }, app: { type: 'string' } },
});
const port = Number(values.port);
const apps = (values.app ?? '').split(',').filter(Boolean);
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await jose.exportJWK(privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };

const client = (id, secret, name) => ({
  client_id: id,
  client_secret: secret,
  redirect_uris: apps.map((a) => `${a}/auth/oidc/${name}/callback`),
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
});

const provider = new Provider(issuer, {
  clients: [
    client('emergence', 'emergence-secret', 'test'),
    client('emergence-wrongaud', 'wrongaud-secret', 'wrongaud'),
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: ['oidc-test-cookie-key'] },
  pkce: { required: () => true },
  // Like Google, Entra and Keycloak: the profile and e-mail claims in the id_token.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({
      sub,
      name: sub,
      preferred_username: sub,
      email: `${sub}@example.test`,
      email_verified: true,
    }),
  }),
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
});
provider.proxy = false;

// The "another audience" client: re-sign its id_token for `another-app`.
const key = await jose.importJWK(jwk, 'RS256');
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/token' && ctx.oidc?.client?.clientId === 'emergence-wrongaud' && ctx.body?.id_token) {
    const claims = jose.decodeJwt(ctx.body.id_token);
    ctx.body.id_token = await new jose.SignJWT({ ...claims, aud: 'another-app' })
      .setProtectedHeader({ alg: 'RS256', kid: 'test-key', typ: 'JWT' })
      .sign(key);
  }
});

const page = (uid, hint) => `<!doctype html><html><head><title>Test provider: sign in</title></head>
<body><h1>Test provider</h1>
<form method="post" action="/interaction/${uid}/login">
<label>Login <input name="login" autofocus value="${hint ?? ''}"></label>
<button type="submit">Sign in</button></form></body></html>`;

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const m = req.url.match(/^\/interaction\/([^/?]+)(\/login)?/);
  if (!m) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    let login = details.params.login_hint;
    if (m[2] && req.method === 'POST') {
      let body = '';
      for await (const chunk of req) body += chunk;
      login = new URLSearchParams(body).get('login');
    } else if (!login || details.prompt.name !== 'login') {
      if (details.prompt.name !== 'login') {
        return provider.interactionFinished(req, res, {}, { mergeWithLastSubmission: true });
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(page(details.uid));
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, {
      mergeWithLastSubmission: false,
    });
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(`interaction failed: ${e.message}`);
  }
});
server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
