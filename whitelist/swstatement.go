package whitelist

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TrustedIssuer is an organisation whose software statements (RFC 7591
// §2.3) registration accepts, e.g. a federation operator that vets RP
// software, with the keys it signs them with.
type TrustedIssuer struct {
	Issuer string             `json:"issuer" yaml:"issuer"`
	Keys   jose.JSONWebKeySet `json:"keys" yaml:"-"`
}

// softwareStatementAlgs are the only algorithms accepted: asymmetric
// ones, so that "none" and HMAC-with-a-public-key confusions cannot
// occur.
var softwareStatementAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.PS256}

const (
	maxSoftwareStatement = 16 << 10
	statementLeeway      = time.Minute
)

// jwtOnlyClaims are the statement's own JWT claims, not client metadata.
var jwtOnlyClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

func ssErr(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidSoftwareStatement, Field: "software_statement",
		Description: "software_statement: " + fmt.Sprintf(format, args...)}
}

// verifySoftwareStatement checks a software statement and returns its
// metadata claims and its issuer.
func verifySoftwareStatement(stmt string, trusted []TrustedIssuer, now time.Time) (fieldSet, string, *Error) {
	if len(stmt) > maxSoftwareStatement {
		return nil, "", ssErr("is larger than %d bytes", maxSoftwareStatement)
	}
	jws, err := jose.ParseSignedCompact(stmt, softwareStatementAlgs)
	if err != nil {
		return nil, "", ssErr("is not a JWT signed with ES256, RS256 or PS256 (unsigned and HMAC statements are refused)")
	}
	if len(jws.Signatures) != 1 {
		return nil, "", ssErr("must carry exactly one signature")
	}
	var peek struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &peek); err != nil || peek.Issuer == "" {
		return nil, "", ssErr("must be a JWT whose claims include iss")
	}
	var ti *TrustedIssuer
	for i := range trusted {
		if trusted[i].Issuer == peek.Issuer {
			ti = &trusted[i]
			break
		}
	}
	if ti == nil {
		return nil, "", &Error{Code: CodeUnapprovedSoftwareStatement, Field: "software_statement",
			Description: fmt.Sprintf("software_statement: issuer %s is not trusted by this server; ask the operator which issuers are", quote(peek.Issuer))}
	}
	kid := jws.Signatures[0].Header.KeyID
	var payload []byte
	for i := range ti.Keys.Keys {
		k := &ti.Keys.Keys[i]
		if kid != "" && k.KeyID != "" && k.KeyID != kid {
			continue
		}
		if p, err := jws.Verify(k); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return nil, "", ssErr("the signature does not verify with issuer %s's keys", quote(ti.Issuer))
	}
	claims, e := parseObject(payload)
	if e != nil {
		return nil, "", ssErr("its claims are not a JSON object")
	}
	if err := checkTimes(claims, now); err != nil {
		return nil, "", ssErr("%v", err)
	}
	for _, c := range jwtOnlyClaims {
		delete(claims, c)
	}
	delete(claims, "software_statement")
	return claims, ti.Issuer, nil
}

func checkTimes(claims fieldSet, now time.Time) error {
	num := func(name string) (time.Time, bool, error) {
		if !claims.present(name) {
			return time.Time{}, false, nil
		}
		var v json.Number
		if err := json.Unmarshal(claims[name], &v); err != nil {
			return time.Time{}, false, fmt.Errorf("%s must be a NumericDate", name)
		}
		f, err := v.Float64()
		if err != nil || f < 0 || f > 1e11 {
			return time.Time{}, false, fmt.Errorf("%s must be a NumericDate", name)
		}
		return time.Unix(int64(f), 0), true, nil
	}
	exp, ok, err := num("exp")
	if err != nil {
		return err
	}
	if ok && !now.Before(exp.Add(statementLeeway)) {
		return errors.New("has expired; obtain a fresh statement from its issuer")
	}
	nbf, ok, err := num("nbf")
	if err != nil {
		return err
	}
	if ok && now.Add(statementLeeway).Before(nbf) {
		return errors.New("is not valid yet (nbf)")
	}
	iat, ok, err := num("iat")
	if err != nil {
		return err
	}
	if ok && now.Add(statementLeeway).Before(iat) {
		return errors.New("is issued in the future (iat)")
	}
	return nil
}
