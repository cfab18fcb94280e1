// Peer authorization server for the Gatehouse benchmark: node oidc-provider (pinned in
// package.json / package-lock.json beside this file).
//
// One process, listening on 127.0.0.1 on an ephemeral port (printed as the first stdout line,
// `oidc-provider listening on http://127.0.0.1:PORT`), with four clients:
//   rs256 / es256 / eddsa  client_credentials, client_secret_post; JWT access tokens signed
//                          with that algorithm (resource server urn:bench:<client_id>)
//   opaque                 client_credentials, client_secret_post; opaque access tokens
//                          (oidc-provider refuses to introspect JWT access tokens)
//   introspector           client_secret_basic; used to call /token/introspection
// Every client's secret is `secret-<client_id>`. Keys (RSA-2048, P-256, Ed25519) are generated
// at start with node:crypto. Tokens and grants live in oidc-provider's default in-memory
// adapter (it is a development adapter, but it is the fastest storage the library offers, so
// it favours the peer).

import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const AUDIENCE = 'http://bench';

function jwk(kind, opts, alg) {
  const { privateKey } = crypto.generateKeyPairSync(kind, opts);
  const key = privateKey.export({ format: 'jwk' });
  return { ...key, alg, use: 'sig', kid: `bench-${alg.toLowerCase()}` };
}

const keys = [
  jwk('rsa', { modulusLength: 2048 }, 'RS256'),
  jwk('ec', { namedCurve: 'P-256' }, 'ES256'),
  jwk('ed25519', {}, 'EdDSA'),
];

const ALGS = { rs256: 'RS256', es256: 'ES256', eddsa: 'EdDSA' };

const server = http.createServer();
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const clients = [
    ...Object.keys(ALGS),
    'opaque',
  ].map((id) => ({
    client_id: id,
    client_secret: `secret-${id}`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_post',
    scope: 'my-scope',
  }));
  clients.push({
    client_id: 'introspector',
    client_secret: 'secret-introspector',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  });

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys },
    cookies: { keys: ['gatehouse-bench-cookie-key'] },
    scopes: ['openid', 'my-scope'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client) => `urn:bench:${client.clientId}`,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          const id = resourceIndicator.replace(/^urn:bench:/, '');
          const base = { scope: 'my-scope', audience: AUDIENCE, accessTokenTTL: 3600 };
          if (ALGS[id]) {
            return { ...base, accessTokenFormat: 'jwt', jwt: { sign: { alg: ALGS[id] } } };
          }
          return { ...base, accessTokenFormat: 'opaque' };
        },
      },
    },
  });
  provider.proxy = false;
  // Errors are part of the response; do not spend the event loop on logging them.
  provider.on('server_error', (ctx, err) => console.error('server_error', err));

  server.on('request', provider.callback());
  console.log(`oidc-provider listening on ${issuer}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
