// A real OIDC provider for the e2e tests of `jit login` and the IdP key fetcher: panva's
// certified oidc-provider (8.x runs on Node 18 and 20), on loopback inside the booted
// container. Device flow on, its built-in development login and consent pages (the test
// plays the person with an HTTP client), public clients `jitaccess` and `other-app`, a
// `groups` claim.
//
// Environment: OP_PORT (default 9400), OP_STATE (a directory: jwks.json, users.json),
// OP_ROTATE=1 puts a new signing key in front of the old ones (key rotation).
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK } from 'jose';

const port = Number(process.env.OP_PORT || 9400);
const state = process.env.OP_STATE || '/var/lib/jit-op';
const issuer = `http://127.0.0.1:${port}`;

async function newKey() {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

const jwksFile = `${state}/jwks.json`;
let keys = existsSync(jwksFile) ? JSON.parse(readFileSync(jwksFile, 'utf8')).keys : [];
if (keys.length === 0 || process.env.OP_ROTATE === '1') {
  keys = [await newKey(), ...keys];
  writeFileSync(jwksFile, JSON.stringify({ keys }), { mode: 0o600 });
}
// users.json: {"alice": {"groups": ["/sre"]}, ...}; login names are the account ids.
const users = JSON.parse(readFileSync(`${state}/users.json`, 'utf8'));

const provider = new Provider(issuer, {
  // other-app: another public client of the same provider, whose genuine tokens are
  // addressed to it (aud), not to jitaccess: hosts must refuse them.
  clients: ['jitaccess', 'other-app'].map((id) => ({
    client_id: id,
    token_endpoint_auth_method: 'none',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
    response_types: [],
    redirect_uris: [],
  })),
  jwks: { keys },
  features: { deviceFlow: { enabled: true }, devInteractions: { enabled: true } },
  claims: { openid: ['sub'], profile: ['preferred_username', 'groups'] },
  conformIdTokenClaims: false, // the scope's claims go into the ID token itself
  cookies: { keys: ['jit-e2e-only-cookie-key'] },
  ttl: { DeviceCode: 600, IdToken: 3600, AccessToken: 3600, Grant: 3600,
         Interaction: 600, Session: 3600 },
  async findAccount(ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, groups: user.groups || [] };
      },
    };
  },
});
provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}, signing kid ${keys[0].kid}`);
});
