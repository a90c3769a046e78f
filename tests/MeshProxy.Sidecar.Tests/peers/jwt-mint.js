// Mints JSON Web Tokens with the jose library (https://github.com/panva/jose), the way a real issuer would, and
// prints one JSON line: the issuer's JWK Set, a rotated set, and tokens good and bad for the sidecar to judge.
//   node jwt-mint.js <issuer> <audience>
const jose = require('jose');
const [issuer, audience] = process.argv.slice(2);

async function keyPair(alg, kid, options) {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true, ...options });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { publicKey, privateKey, jwk, kid, alg };
}

function sign(key, claims, header = {}) {
  return new jose.SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header })
    .sign(key.privateKey);
}

(async () => {
  const rsa = await keyPair('RS256', 'rsa-1');
  const ec = await keyPair('ES256', 'ec-1');
  const ed = await keyPair('EdDSA', 'ed-1', { crv: 'Ed25519' });
  const stranger = await keyPair('RS256', 'rsa-unknown');
  const rotated = await keyPair('RS256', 'rsa-2');
  const now = Math.floor(Date.now() / 1000);
  const base = { iss: issuer, aud: audience, iat: now, exp: now + 3600 };

  const rs256 = await sign(rsa, { ...base, sub: 'alice', groups: ['admins', 'staff'], azp: 'web', org: { team: 'payments' } });
  // The signature of alice's token over a payload that says "admin": a forged claim.
  const [h, , s] = rs256.split('.');
  const forgedPayload = Buffer.from(JSON.stringify({ ...base, sub: 'admin', groups: ['admins'] })).toString('base64url');

  const spkiPem = await jose.exportSPKI(rsa.publicKey);
  const tokens = {
    rs256,
    es256: await sign(ec, { ...base, sub: 'bob', groups: ['staff'] }),
    eddsa: await sign(ed, { ...base, sub: 'carol' }),
    rs256NoKid: await new jose.SignJWT({ ...base, sub: 'dave' }).setProtectedHeader({ alg: 'RS256' }).sign(rsa.privateKey),
    expired: await sign(rsa, { ...base, sub: 'alice', iat: now - 7200, exp: now - 3600 }),
    notYetValid: await sign(rsa, { ...base, sub: 'alice', nbf: now + 3600 }),
    wrongIssuer: await sign(rsa, { ...base, iss: 'https://evil.example', sub: 'alice' }),
    wrongAudience: await sign(rsa, { ...base, aud: 'someone-else', sub: 'alice' }),
    algNone: new jose.UnsecuredJWT({ ...base, sub: 'alice' }).encode(),
    // Key confusion: HMAC keyed with the issuer's public RSA key, which anyone can read from the JWK Set.
    hs256WithRsaPublicKey: await new jose.SignJWT({ ...base, sub: 'alice' })
      .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1', typ: 'JWT' })
      .sign(new TextEncoder().encode(spkiPem)),
    unknownKid: await sign(stranger, { ...base, sub: 'alice' }),
    forged: `${h}.${forgedPayload}.${s}`,
    rotated: await sign(rotated, { ...base, sub: 'erin' }),
  };

  console.log(JSON.stringify({
    type: 'minted',
    now,
    jwks: { keys: [rsa.jwk, ec.jwk, ed.jwk] },
    rotatedJwks: { keys: [rotated.jwk] },
    tokens,
  }));
})().catch((e) => { console.log(JSON.stringify({ type: 'error', error: String(e && e.stack || e) })); process.exit(1); });
