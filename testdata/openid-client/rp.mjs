// A relying party built on panva's openid-client, the strictest widely
// used OpenID Connect client library. cmd/watashi/e2e_openidclient_test.go
// runs it against `watashi serve` behind TLS and plays the resident's
// browser in between:
//
//   1. discovery, then an authorization URL with PKCE (S256), state and
//      nonce: printed as {"step":"authorize","url":...};
//   2. the test signs the resident in and writes the callback URL (the
//      redirect back to this RP) as one line on stdin;
//   3. the authorization response is checked the way the library does it
//      (state, and iss per RFC 9207: tampered or missing iss must be
//      refused), then the code is exchanged with ID token validation
//      (signature, iss, aud, nonce), userinfo, introspection, refresh,
//      revocation, and the negative cases; everything observed is printed
//      as {"step":"done",...} for the Go side to judge.
//
// Configuration comes from the environment: WATASHI_ISSUER, RP_CLIENT_ID,
// RP_CLIENT_SECRET, RP_REDIRECT_URI, RP_SCOPE. The test CA reaches Node
// through NODE_EXTRA_CA_CERTS; nothing here turns TLS checks off.
import { createInterface } from 'node:readline';
import * as client from 'openid-client';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const issuer = env('WATASHI_ISSUER');
const clientId = env('RP_CLIENT_ID');
const clientSecret = env('RP_CLIENT_SECRET');
const redirectUri = env('RP_REDIRECT_URI');
const scope = env('RP_SCOPE');

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// expectError runs fn, which must fail, and describes how it failed.
async function expectError(name, fn) {
  try {
    await fn();
  } catch (e) {
    const out = { name: e.name, code: e.code, message: e.message };
    // openid-client wraps oauth4webapi's findings: keep the reason.
    if (e.cause instanceof Error) {
      out.cause = { code: e.cause.code, message: e.cause.message };
    }
    if (e instanceof client.ResponseBodyError) {
      out.status = e.status;
      out.error = e.error;
    }
    if (e instanceof client.WWWAuthenticateChallengeError) {
      out.status = e.status;
      out.challenges = e.cause;
      out.body = await e.response.json().catch(() => null);
    }
    if (e instanceof client.AuthorizationResponseError) {
      out.error = e.error;
    }
    return out;
  }
  throw new Error(`${name}: expected a failure, got success`);
}

async function readLine() {
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    rl.close();
    return line.trim();
  }
  throw new Error('stdin closed before the callback URL arrived');
}

async function main() {
  // ES256 is Watashi's default ID token algorithm; the library expects
  // RS256 unless told (OIDC Core's default).
  const metadata = { id_token_signed_response_alg: 'ES256' };
  const config = await client.discovery(new URL(issuer), clientId, metadata, client.ClientSecretBasic(clientSecret));
  const as = config.serverMetadata();

  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  emit({ step: 'authorize', url: url.href });

  const callback = new URL(await readLine());
  const checks = { pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true };
  const negatives = {};

  // The authorization response as an attacker could bend it. Each must be
  // refused by the library before it spends the code.
  const tampered = new URL(callback);
  tampered.searchParams.set('iss', 'https://evil.example');
  negatives.iss_tampered = await expectError('tampered iss', () => client.authorizationCodeGrant(config, tampered, checks));
  const noIss = new URL(callback);
  noIss.searchParams.delete('iss');
  negatives.iss_missing = await expectError('missing iss', () => client.authorizationCodeGrant(config, noIss, checks));
  negatives.state_wrong = await expectError('wrong state', () =>
    client.authorizationCodeGrant(config, callback, { ...checks, expectedState: client.randomState() }));

  // The code exchange; the library validates the ID token's signature
  // (against the JWKS), iss, aud, azp, exp, iat and nonce.
  const tokens = await client.authorizationCodeGrant(config, callback, checks);
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const introspection = await client.tokenIntrospection(config, tokens.access_token);
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  const refreshedClaims = refreshed.claims();

  negatives.userinfo_bad_token = await expectError('userinfo with a bad token', () =>
    client.fetchUserInfo(config, 'not-a-token', claims.sub));
  const wrongSecret = await client.discovery(new URL(issuer), clientId, metadata, client.ClientSecretBasic('not the secret'));
  negatives.refresh_wrong_secret = await expectError('refresh with a wrong secret', () =>
    client.refreshTokenGrant(wrongSecret, refreshed.refresh_token));

  // Revocation of the first access token (the refresh rotated the rest).
  await client.tokenRevocation(config, tokens.access_token);
  negatives.userinfo_revoked = await expectError('userinfo with a revoked token', () =>
    client.fetchUserInfo(config, tokens.access_token, claims.sub));
  // The refreshed access token still works ...
  const userinfoAfterRevocation = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
  // ... until this client replays the code: RFC 6749 §4.1.2 revokes all it
  // minted.
  negatives.code_replay = await expectError('code replay', () => client.authorizationCodeGrant(config, callback, checks));
  negatives.userinfo_after_replay = await expectError('userinfo after the replay', () =>
    client.fetchUserInfo(config, refreshed.access_token, claims.sub));

  emit({
    step: 'done',
    server: {
      issuer: as.issuer,
      authorization_response_iss_parameter_supported: as.authorization_response_iss_parameter_supported,
    },
    state,
    nonce,
    id_token: { iss: claims.iss, aud: claims.aud, nonce: claims.nonce, sub: claims.sub, acr: claims.acr },
    token_scope: tokens.scope,
    userinfo,
    introspection: { active: introspection.active, sub: introspection.sub, client_id: introspection.client_id },
    refreshed: { scope: refreshed.scope, sub: refreshedClaims.sub, iss: refreshedClaims.iss, rotated: refreshed.refresh_token !== tokens.refresh_token },
    userinfo_after_revocation_sub: userinfoAfterRevocation.sub,
    negatives,
  });
}

main().catch((e) => {
  emit({ step: 'error', name: e?.name, code: e?.code, message: e?.message, stack: e?.stack });
  process.exit(1);
});
