// Package pkibridge turns a JPKI signature into verified facts.
//
// The flow for one signature, in the order the checks run:
//
//  1. Parse the envelope (ParseJWS, ParseCMS, ParseRaw). Sizes are bounded
//     before parsing, algorithms come from explicit allow-lists (never
//     `none` or HMAC, SHA-1 only when Policy.AllowSHA1), and the
//     signature is checked against the leaf certificate's own key. The
//     result is an Envelope: the leaf, any extra certificates and the
//     exact bytes signed.
//  2. Verifier.Verify compares those bytes with what the server issued, in
//     constant time; any difference is ReasonBadSignature.
//  3. The leaf is classified (Policy.Classify): signature or
//     authentication certificate, by key usage (enforced even when the
//     extension is not critical) and certificate policy OID. CA
//     certificates as leaves, RSA below 2048 bits and unknown critical
//     extensions are refused.
//  4. The chain is built with crypto/x509 at Verifier.Now, with a small
//     leeway, to anchors matched by key (J-LIS generations share a DN).
//  5. For signature certificates, the basic four facts are read from the
//     SubjectAltName otherNames (ParseAttributes). This runs before
//     revocation because a revocation check may cost the operator a fee.
//  6. Revocation is asked of a RevocationChecker (CRL, OCSP, or both) and
//     the RevocationMode decides what an unknown answer means.
//
// Built chains are cached (chaincache.go) for repeat sign-ins with the
// same certificate while every certificate is inside its validity window;
// profile, revocation and the envelope signature are checked every time.
//
// Every failure is an *Error with a stable Reason; its detail never holds
// personal attributes. Package jpkisim issues JPKI-profile certificates,
// CRLs and OCSP answers for tests and the demo; it is never for production.
package pkibridge
