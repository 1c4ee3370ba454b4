// A real OpenID Connect provider for the Lightbox tests: the certified `oidc-provider` package
// (pinned in package-lock.json, installed by tests/web/oidc_provider.py into .cache/), with its
// development interactions (a sign-in form that accepts any password for the accounts below,
// then a consent page). Started on 127.0.0.1 by the `oidc_provider` fixture; never for anything
// but tests.
//
// Environment: PORT, CLIENTS (JSON list of oidc-provider client metadata), ACCOUNTS (JSON
// object: account id -> its claims).
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.CLIENTS);
const accounts = JSON.parse(process.env.ACCOUNTS);

const provider = new Provider(issuer, {
  clients: clients.map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    ...client,
  })),
  // PKCE for every client (oidc-provider requires it for public clients only by default)
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'email', 'roles'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
    // the roles, and Lightbox's scoped-grant claim (a user who may see some studies only)
    roles: ['roles', 'lightbox_studies'],
  },
  // the scopes' claims in the ID token too (Lightbox maps the ID token's claims)
  conformIdTokenClaims: false,
  async findAccount(_ctx, id) {
    if (!Object.hasOwn(accounts, id)) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...accounts[id] }; } };
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['lightbox-tests-only'] },
  ttl: { AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 600, IdToken: 300 },
});
provider.proxy = false;

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
