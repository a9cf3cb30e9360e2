package pkibridge

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OIDs the CMS parser uses.
var (
	cmsOIDData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	cmsOIDSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	cmsOIDContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	cmsOIDMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}

	cmsOIDSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	cmsOIDSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	cmsOIDSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	cmsOIDSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	cmsOIDSHA224 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	cmsOIDMD5    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}

	cmsOIDRSA          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	cmsOIDSHA1WithRSA  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	cmsOIDMGF1         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	cmsOIDRSAPSS       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	cmsOIDSHA256RSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	cmsOIDSHA384RSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	cmsOIDSHA512RSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	cmsOIDECPublicKey  = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	cmsOIDECDSAWithSHA = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	cmsOIDECDSASHA256  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	cmsOIDECDSASHA384  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	cmsOIDECDSASHA512  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
)

// Structural bounds. A JPKI SignedData has one digest algorithm, one or two
// certificates and a handful of signed attributes.
const (
	cmsMaxCerts      = 5
	cmsMaxDigestAlgs = 8
	cmsMaxAttrs      = 32
	cmsMaxDepth      = 48 // BER nesting; a SignedData with certificates is about 15 deep
)

var (
	cmsTag0Cons = cbasn1.Tag(0).ContextSpecific().Constructed()
	cmsTag1Cons = cbasn1.Tag(1).ContextSpecific().Constructed()
	cmsTag2Cons = cbasn1.Tag(2).ContextSpecific().Constructed()
	cmsTag3Cons = cbasn1.Tag(3).ContextSpecific().Constructed()
	cmsTag0Prim = cbasn1.Tag(0).ContextSpecific()
)

// cmsAlgID is an AlgorithmIdentifier with its parameters left encoded.
type cmsAlgID struct {
	oid       asn1.ObjectIdentifier
	params    cryptobyte.String // full element, nil when absent
	hasParams bool
}

type cmsSignerInfo struct {
	issuer    []byte // full DER Name, when sid is issuerAndSerialNumber
	serial    *big.Int
	ski       []byte // when sid is subjectKeyIdentifier
	digestAlg cmsAlgID
	// signedAttrs is the full [0] IMPLICIT element; the signature covers it
	// re-tagged as SET OF (RFC 5652 §5.4).
	signedAttrs []byte
	sigAlg      cmsAlgID
	signature   []byte
}

type cmsSignedData struct {
	eContent    []byte
	hasEContent bool
	certs       [][]byte
	signer      cmsSignerInfo
}

// cmsScheme is the resolved signature scheme of the one signer.
type cmsScheme struct {
	hash    crypto.Hash
	kind    string // "pkcs1", "pss", "ecdsa"
	saltLen int    // pss only
	name    string // Envelope.Algorithm
}

// ParseCMS reads a CMS or PKCS#7 SignedData made by a card tool or
// `openssl cms -sign`: PEM or DER (BER from streaming signers is
// normalised first), attached or detached content, with or without signed
// attributes. Exactly one signer is accepted, and its certificate must be in
// the SignedData: we have no other source of keys. detached is the content
// for a detached signature; when the SignedData carries content too, both
// must be equal.
//
// This is a small strict parser rather than a general PKCS#7 library:
// general libraries accept several signers, take SHA-1 by default, ignore
// trailing data or the contentType attribute, and each of those is a way to
// make a signature appear to cover something it does not.
func ParseCMS(data []byte, detached []byte, p Policy) (*Envelope, error) {
	limit := envLimit(p)
	if len(data) == 0 {
		return nil, Fail(ReasonMalformed, "empty CMS")
	}
	if len(data) > limit {
		return nil, Fail(ReasonMalformed, "CMS too large: %d bytes, limit %d", len(data), limit)
	}
	if len(detached) > limit {
		return nil, Fail(ReasonMalformed, "CMS detached content too large: %d bytes, limit %d", len(detached), limit)
	}
	raw, err := cmsUnarmor(data)
	if err != nil {
		return nil, err
	}
	var der []byte
	switch {
	case !cmsIsDER(raw, 0):
		if der, err = cmsToDER(raw); err != nil {
			return nil, Wrap(ReasonMalformed, err, "CMS encoding")
		}
	case len(raw) > 0 && len(data) > 0 && &raw[0] == &data[0]:
		// The certificates will alias der: keep the caller's buffer theirs.
		der = bytes.Clone(raw)
	default:
		der = raw // decoded from PEM, already ours
	}
	sd, err := cmsParse(der)
	if err != nil {
		return nil, err
	}
	si := &sd.signer
	scheme, err := cmsResolveScheme(si, p)
	if err != nil {
		return nil, err
	}
	leaf, extra, err := cmsFindSigner(sd)
	if err != nil {
		return nil, err
	}

	var content []byte
	switch {
	case !sd.hasEContent && detached == nil:
		return nil, Fail(ReasonMalformed, "CMS has no content (detached signature) and none was given")
	case !sd.hasEContent:
		content = append([]byte{}, detached...)
	case detached != nil && !bytes.Equal(detached, sd.eContent):
		return nil, Fail(ReasonBadSignature, "CMS attached content differs from the detached content given")
	default:
		content = sd.eContent
	}

	signed := content
	if si.signedAttrs != nil {
		if signed, err = cmsCheckSignedAttrs(si.signedAttrs, scheme.hash, content); err != nil {
			return nil, err
		}
	}
	if err := cmsVerify(scheme, leaf, signed, si.signature, p); err != nil {
		return nil, err
	}
	return &Envelope{
		Format:    "cms",
		Leaf:      leaf,
		Extra:     extra,
		Content:   content,
		Hash:      scheme.hash,
		Algorithm: scheme.name,
	}, nil
}

// VerifyCMS is ParseCMS followed by Verify. With detached nil the attached
// content is what must equal expected.
func (v *Verifier) VerifyCMS(ctx context.Context, cms []byte, detached []byte, expected []byte) (*Result, error) {
	if v == nil {
		return nil, Fail(ReasonMalformed, "nil Verifier")
	}
	env, err := ParseCMS(cms, detached, envPolicy(v))
	if err != nil {
		return nil, err
	}
	return v.Verify(ctx, env, expected)
}

// cmsUnarmor accepts DER or one PEM block labelled CMS or PKCS7. Nothing may
// precede or follow the block: pem.Decode alone would skip leading text.
func cmsUnarmor(data []byte) ([]byte, error) {
	t := bytes.TrimSpace(data)
	if bytes.HasPrefix(t, []byte("MIME-Version:")) || bytes.HasPrefix(t, []byte("Content-Type:")) {
		return nil, Fail(ReasonMalformed, "S/MIME not accepted: send DER or PEM (openssl -outform DER|PEM)")
	}
	if !bytes.HasPrefix(t, []byte("-----BEGIN ")) {
		return data, nil
	}
	block, rest := pem.Decode(t)
	if block == nil {
		return nil, Fail(ReasonMalformed, "CMS PEM does not decode")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, Fail(ReasonMalformed, "data after the CMS PEM block")
	}
	switch block.Type {
	case "CMS", "PKCS7", "PKCS #7 SIGNED DATA":
	default:
		return nil, Fail(ReasonMalformed, "PEM block %q is not CMS or PKCS7", envQuote(block.Type))
	}
	if len(block.Headers) != 0 {
		return nil, Fail(ReasonMalformed, "CMS PEM block has headers")
	}
	return block.Bytes, nil
}

// cmsParse decodes ContentInfo{SignedData} from DER and checks its
// structure; algorithms, certificates and the signature are judged later.
func cmsParse(der []byte) (*cmsSignedData, error) {
	bad := func(what string) error { return Fail(ReasonMalformed, "CMS: %s", what) }
	in := cryptobyte.String(der)
	var ci, ciContent, sdSeq cryptobyte.String
	var ct asn1.ObjectIdentifier
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) {
		return nil, bad("not a ContentInfo")
	}
	if !in.Empty() {
		return nil, bad("trailing data after the ContentInfo")
	}
	if !ci.ReadASN1ObjectIdentifier(&ct) {
		return nil, bad("ContentInfo has no content type")
	}
	if !ct.Equal(cmsOIDSignedData) {
		return nil, Fail(ReasonMalformed, "CMS: content type %s is not SignedData", ct)
	}
	if !ci.ReadASN1(&ciContent, cmsTag0Cons) || !ci.Empty() ||
		!ciContent.ReadASN1(&sdSeq, cbasn1.SEQUENCE) || !ciContent.Empty() {
		return nil, bad("bad ContentInfo content")
	}

	sd := &cmsSignedData{}
	var version int64
	if !sdSeq.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || version < 1 || version > 5 {
		return nil, bad("bad SignedData version")
	}
	var digestAlgs cryptobyte.String
	if !sdSeq.ReadASN1(&digestAlgs, cbasn1.SET) {
		return nil, bad("bad digestAlgorithms")
	}
	for n := 0; !digestAlgs.Empty(); n++ {
		if n >= cmsMaxDigestAlgs {
			return nil, bad("too many digestAlgorithms")
		}
		if _, ok := cmsReadAlgID(&digestAlgs); !ok {
			return nil, bad("bad digestAlgorithms")
		}
	}

	var encap cryptobyte.String
	var eType asn1.ObjectIdentifier
	if !sdSeq.ReadASN1(&encap, cbasn1.SEQUENCE) || !encap.ReadASN1ObjectIdentifier(&eType) {
		return nil, bad("bad encapContentInfo")
	}
	if !eType.Equal(cmsOIDData) {
		return nil, Fail(ReasonMalformed, "CMS: encapsulated content type %s is not id-data", eType)
	}
	var eWrap cryptobyte.String
	if !encap.ReadOptionalASN1(&eWrap, &sd.hasEContent, cmsTag0Cons) {
		return nil, bad("bad eContent")
	}
	if sd.hasEContent {
		var octets cryptobyte.String
		if !eWrap.ReadASN1(&octets, cbasn1.OCTET_STRING) || !eWrap.Empty() {
			return nil, bad("eContent is not an OCTET STRING")
		}
		sd.eContent = append([]byte{}, octets...)
	}
	if !encap.Empty() {
		return nil, bad("trailing data in encapContentInfo")
	}

	var certSet cryptobyte.String
	var hasCerts bool
	if !sdSeq.ReadOptionalASN1(&certSet, &hasCerts, cmsTag0Cons) {
		return nil, bad("bad certificates")
	}
	for !certSet.Empty() {
		var cert cryptobyte.String
		var tag cbasn1.Tag
		if !certSet.ReadAnyASN1Element(&cert, &tag) {
			return nil, bad("bad certificates")
		}
		if tag != cbasn1.SEQUENCE {
			return nil, bad("only X.509 certificates are accepted in certificates")
		}
		if len(sd.certs) >= cmsMaxCerts {
			return nil, Fail(ReasonMalformed, "CMS: more than %d certificates", cmsMaxCerts)
		}
		sd.certs = append(sd.certs, cert)
	}
	// CRLs are ignored: revocation is the Verifier's business, from
	// configured sources only.
	if !sdSeq.SkipOptionalASN1(cmsTag1Cons) {
		return nil, bad("bad crls")
	}

	var signerInfos cryptobyte.String
	if !sdSeq.ReadASN1(&signerInfos, cbasn1.SET) || !sdSeq.Empty() {
		return nil, bad("bad signerInfos")
	}
	var signers []cryptobyte.String
	for !signerInfos.Empty() {
		var s cryptobyte.String
		if !signerInfos.ReadASN1(&s, cbasn1.SEQUENCE) {
			return nil, bad("bad SignerInfo")
		}
		signers = append(signers, s)
	}
	switch len(signers) {
	case 0:
		return nil, bad("no signers")
	case 1:
	default:
		return nil, Fail(ReasonMalformed, "CMS: %d signers, exactly one is accepted", len(signers))
	}
	if err := cmsParseSignerInfo(signers[0], &sd.signer); err != nil {
		return nil, err
	}
	return sd, nil
}

func cmsParseSignerInfo(s cryptobyte.String, si *cmsSignerInfo) error {
	bad := func(what string) error { return Fail(ReasonMalformed, "CMS SignerInfo: %s", what) }
	var version int64
	if !s.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || (version != 1 && version != 3) {
		return bad("bad version")
	}
	switch {
	case s.PeekASN1Tag(cbasn1.SEQUENCE):
		var ias, issuer cryptobyte.String
		si.serial = new(big.Int)
		if !s.ReadASN1(&ias, cbasn1.SEQUENCE) ||
			!ias.ReadASN1Element(&issuer, cbasn1.SEQUENCE) ||
			!ias.ReadASN1Integer(si.serial) || !ias.Empty() {
			return bad("bad issuerAndSerialNumber")
		}
		si.issuer = issuer
	case s.PeekASN1Tag(cmsTag0Prim):
		var ski cryptobyte.String
		if !s.ReadASN1(&ski, cmsTag0Prim) || len(ski) == 0 {
			return bad("bad subjectKeyIdentifier")
		}
		si.ski = ski
	default:
		return bad("bad signer identifier")
	}
	var ok bool
	if si.digestAlg, ok = cmsReadAlgID(&s); !ok {
		return bad("bad digestAlgorithm")
	}
	if s.PeekASN1Tag(cmsTag0Cons) {
		var full cryptobyte.String
		if !s.ReadASN1Element(&full, cmsTag0Cons) {
			return bad("bad signedAttrs")
		}
		si.signedAttrs = full
	}
	if si.sigAlg, ok = cmsReadAlgID(&s); !ok {
		return bad("bad signatureAlgorithm")
	}
	var sig cryptobyte.String
	if !s.ReadASN1(&sig, cbasn1.OCTET_STRING) || len(sig) == 0 {
		return bad("bad signature")
	}
	si.signature = sig
	if !s.SkipOptionalASN1(cmsTag1Cons) || !s.Empty() {
		return bad("trailing data")
	}
	return nil
}

func cmsReadAlgID(s *cryptobyte.String) (cmsAlgID, bool) {
	var a cmsAlgID
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1ObjectIdentifier(&a.oid) {
		return a, false
	}
	if !seq.Empty() {
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1Element(&a.params, &tag) || !seq.Empty() {
			return a, false
		}
		a.hasParams = true
	}
	return a, true
}

// cmsNullParams: digest and PKCS#1 v1.5 algorithms have absent or NULL
// parameters, nothing else.
func cmsNullParams(a cmsAlgID) bool {
	return !a.hasParams || bytes.Equal(a.params, []byte{0x05, 0x00})
}

func cmsDigestHash(a cmsAlgID) (crypto.Hash, error) {
	if !cmsNullParams(a) {
		return 0, Fail(ReasonMalformed, "CMS digest algorithm %s has parameters", a.oid)
	}
	switch {
	case a.oid.Equal(cmsOIDSHA256):
		return crypto.SHA256, nil
	case a.oid.Equal(cmsOIDSHA384):
		return crypto.SHA384, nil
	case a.oid.Equal(cmsOIDSHA512):
		return crypto.SHA512, nil
	case a.oid.Equal(cmsOIDSHA1):
		return crypto.SHA1, nil
	case a.oid.Equal(cmsOIDSHA224):
		return crypto.SHA224, nil
	case a.oid.Equal(cmsOIDMD5):
		return crypto.MD5, nil
	}
	return 0, Fail(ReasonWeakAlgorithm, "CMS digest algorithm %s not accepted", a.oid)
}

// cmsResolveScheme maps the signer's digest and signature algorithm OIDs to
// one allowed scheme; the two must agree on the hash.
func cmsResolveScheme(si *cmsSignerInfo, p Policy) (cmsScheme, error) {
	h, err := cmsDigestHash(si.digestAlg)
	if err != nil {
		return cmsScheme{}, err
	}
	if err := envCheckHash(h, p); err != nil {
		return cmsScheme{}, err
	}
	sc := cmsScheme{hash: h}
	a := si.sigAlg
	// A signature OID that names a hash must name the digest algorithm's.
	if sh, ok := cmsSigAlgHash(a.oid); ok && sh != h {
		return sc, Fail(ReasonMalformed, "CMS signature algorithm %s uses %s, digestAlgorithm is %s", a.oid, envHashName(sh), envHashName(h))
	}
	switch {
	case a.oid.Equal(cmsOIDRSA), a.oid.Equal(cmsOIDSHA1WithRSA), a.oid.Equal(cmsOIDSHA256RSA),
		a.oid.Equal(cmsOIDSHA384RSA), a.oid.Equal(cmsOIDSHA512RSA):
		if !cmsNullParams(a) {
			return sc, Fail(ReasonMalformed, "CMS signature algorithm %s has parameters", a.oid)
		}
		sc.kind, sc.name = "pkcs1", envHashName(h)+"WithRSA"
	case a.oid.Equal(cmsOIDRSAPSS):
		salt, err := cmsPSSParams(a, h)
		if err != nil {
			return sc, err
		}
		sc.kind, sc.saltLen, sc.name = "pss", salt, envHashName(h)+"WithRSAPSS"
	case a.oid.Equal(cmsOIDECPublicKey):
		// Older signers name the key type instead of the scheme, sometimes
		// with the curve as parameter; the curve that counts is the
		// certificate's.
		sc.kind, sc.name = "ecdsa", "ecdsaWith"+strings.ToUpper(envHashName(h))
	case a.oid.Equal(cmsOIDECDSAWithSHA), a.oid.Equal(cmsOIDECDSASHA256),
		a.oid.Equal(cmsOIDECDSASHA384), a.oid.Equal(cmsOIDECDSASHA512):
		if a.hasParams {
			return sc, Fail(ReasonMalformed, "CMS signature algorithm %s has parameters", a.oid)
		}
		sc.kind, sc.name = "ecdsa", "ecdsaWith"+strings.ToUpper(envHashName(h))
	default:
		return sc, Fail(ReasonWeakAlgorithm, "CMS signature algorithm %s not accepted", a.oid)
	}
	return sc, nil
}

// cmsSigAlgHash is the hash a combined signature algorithm OID names.
func cmsSigAlgHash(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	switch {
	case oid.Equal(cmsOIDSHA1WithRSA), oid.Equal(cmsOIDECDSAWithSHA):
		return crypto.SHA1, true
	case oid.Equal(cmsOIDSHA256RSA), oid.Equal(cmsOIDECDSASHA256):
		return crypto.SHA256, true
	case oid.Equal(cmsOIDSHA384RSA), oid.Equal(cmsOIDECDSASHA384):
		return crypto.SHA384, true
	case oid.Equal(cmsOIDSHA512RSA), oid.Equal(cmsOIDECDSASHA512):
		return crypto.SHA512, true
	}
	return 0, false
}

// cmsPSSParams checks RSASSA-PSS-params (RFC 4055): the hash and the MGF1
// hash must be the digest algorithm, the trailer 1. It returns the salt
// length, which signers choose freely (OpenSSL uses the maximum) and which
// verification then requires exactly.
func cmsPSSParams(a cmsAlgID, h crypto.Hash) (int, error) {
	bad := Fail(ReasonMalformed, "CMS RSASSA-PSS parameters are malformed")
	if !a.hasParams {
		return 0, Fail(ReasonMalformed, "CMS RSASSA-PSS without parameters")
	}
	in := a.params
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return 0, bad
	}
	pssHash := crypto.SHA1 // RFC 4055 defaults
	mgfHash := crypto.SHA1
	salt := int64(20)
	var field cryptobyte.String
	var present bool
	if !seq.ReadOptionalASN1(&field, &present, cmsTag0Cons) {
		return 0, bad
	}
	if present {
		alg, ok := cmsReadAlgID(&field)
		if !ok || !field.Empty() {
			return 0, bad
		}
		hh, err := cmsDigestHash(alg)
		if err != nil {
			return 0, err
		}
		pssHash = hh
	}
	if !seq.ReadOptionalASN1(&field, &present, cmsTag1Cons) {
		return 0, bad
	}
	if present {
		mgf, ok := cmsReadAlgID(&field)
		if !ok || !field.Empty() || !mgf.oid.Equal(cmsOIDMGF1) || !mgf.hasParams {
			return 0, bad
		}
		params := mgf.params
		inner, ok := cmsReadAlgID(&params)
		if !ok || !params.Empty() {
			return 0, bad
		}
		hh, err := cmsDigestHash(inner)
		if err != nil {
			return 0, err
		}
		mgfHash = hh
	}
	if !seq.ReadOptionalASN1(&field, &present, cmsTag2Cons) {
		return 0, bad
	}
	if present {
		if !field.ReadASN1Int64WithTag(&salt, cbasn1.INTEGER) || !field.Empty() || salt < 0 || salt > 1024 {
			return 0, bad
		}
		if salt == 0 {
			// crypto/rsa reads a zero salt length as "any length", which
			// would verify more than was declared.
			return 0, Fail(ReasonMalformed, "CMS RSASSA-PSS with an empty salt not supported")
		}
	}
	if !seq.ReadOptionalASN1(&field, &present, cmsTag3Cons) {
		return 0, bad
	}
	if present {
		var trailer int64
		if !field.ReadASN1Int64WithTag(&trailer, cbasn1.INTEGER) || !field.Empty() || trailer != 1 {
			return 0, bad
		}
	}
	if !seq.Empty() {
		return 0, bad
	}
	if pssHash != h || mgfHash != h {
		return 0, Fail(ReasonMalformed, "CMS RSASSA-PSS hash (%s, MGF1 %s) differs from digestAlgorithm %s",
			envHashName(pssHash), envHashName(mgfHash), envHashName(h))
	}
	return int(salt), nil
}

// cmsFindSigner finds the signer's certificate by its identifier. The
// other certificates become Extra. Two different certificates that both
// match are refused: the signer would be ambiguous.
func cmsFindSigner(sd *cmsSignedData) (*x509.Certificate, []*x509.Certificate, error) {
	if len(sd.certs) == 0 {
		return nil, nil, Fail(ReasonMalformed, "CMS carries no certificates: the signer's certificate is required")
	}
	si := &sd.signer
	var leaf *x509.Certificate
	var extra []*x509.Certificate
	for i, der := range sd.certs {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, Wrap(ReasonMalformed, err, "CMS certificate %d", i)
		}
		match := false
		if si.ski != nil {
			match = len(c.SubjectKeyId) > 0 && bytes.Equal(c.SubjectKeyId, si.ski)
		} else {
			match = bytes.Equal(c.RawIssuer, si.issuer) && c.SerialNumber.Cmp(si.serial) == 0
		}
		switch {
		case !match:
			extra = append(extra, c)
		case leaf == nil:
			leaf = c
		case !bytes.Equal(leaf.Raw, c.Raw):
			return nil, nil, Fail(ReasonMalformed, "CMS: two different certificates match the signer identifier")
		}
	}
	if leaf == nil {
		return nil, nil, Fail(ReasonMalformed, "CMS: the signer's certificate is not among the %d certificates", len(sd.certs))
	}
	return leaf, extra, nil
}

// cmsCheckSignedAttrs enforces RFC 5652 §5.3/§11: contentType equal to
// id-data and messageDigest equal to the content's digest, each exactly
// once with one value, and no attribute type twice. It returns the bytes
// the signature covers: the attributes re-tagged as a SET OF.
func cmsCheckSignedAttrs(full []byte, h crypto.Hash, content []byte) ([]byte, error) {
	bad := func(what string) error { return Fail(ReasonMalformed, "CMS signedAttrs: %s", what) }
	in := cryptobyte.String(full)
	var set cryptobyte.String
	if !in.ReadASN1(&set, cmsTag0Cons) || !in.Empty() {
		return nil, bad("malformed")
	}
	if set.Empty() {
		return nil, bad("empty")
	}
	seen := map[string]bool{}
	var digest []byte
	haveCT := false
	for n := 0; !set.Empty(); n++ {
		if n >= cmsMaxAttrs {
			return nil, bad("too many attributes")
		}
		var attr, values cryptobyte.String
		var typ asn1.ObjectIdentifier
		if !set.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&typ) ||
			!attr.ReadASN1(&values, cbasn1.SET) || !attr.Empty() || values.Empty() {
			return nil, bad("malformed attribute")
		}
		key := typ.String()
		if seen[key] {
			return nil, Fail(ReasonMalformed, "CMS signedAttrs: attribute %s appears twice", key)
		}
		seen[key] = true
		switch {
		case typ.Equal(cmsOIDContentType):
			var ct asn1.ObjectIdentifier
			if !values.ReadASN1ObjectIdentifier(&ct) || !values.Empty() {
				return nil, bad("contentType must have one OID value")
			}
			if !ct.Equal(cmsOIDData) {
				return nil, Fail(ReasonMalformed, "CMS signedAttrs: contentType %s differs from the content's id-data", ct)
			}
			haveCT = true
		case typ.Equal(cmsOIDMessageDigest):
			var d cryptobyte.String
			if !values.ReadASN1(&d, cbasn1.OCTET_STRING) || !values.Empty() {
				return nil, bad("messageDigest must have one OCTET STRING value")
			}
			digest = d
		}
	}
	if !haveCT {
		return nil, bad("contentType attribute missing")
	}
	if digest == nil {
		return nil, bad("messageDigest attribute missing")
	}
	if subtle.ConstantTimeCompare(digest, envDigest(h, content)) != 1 {
		return nil, Fail(ReasonBadSignature, "CMS messageDigest does not match the content")
	}
	signed := append([]byte{}, full...)
	signed[0] = byte(cbasn1.SET) // the signature covers the EXPLICIT SET OF form
	return signed, nil
}

func cmsVerify(sc cmsScheme, leaf *x509.Certificate, signed, sig []byte, p Policy) error {
	digest := envDigest(sc.hash, signed)
	switch sc.kind {
	case "pkcs1", "pss":
		pub, ok := leaf.PublicKey.(*rsa.PublicKey)
		if !ok {
			return Fail(ReasonBadSignature, "CMS %s signature needs an RSA key, the signer certificate has %s", sc.name, envKeyName(leaf.PublicKey))
		}
		if err := envCheckRSA(pub, p); err != nil {
			return err
		}
		if len(sig) != pub.Size() {
			return Fail(ReasonMalformed, "CMS signature is %d bytes, the RSA modulus is %d", len(sig), pub.Size())
		}
		var err error
		if sc.kind == "pkcs1" {
			err = rsa.VerifyPKCS1v15(pub, sc.hash, digest, sig)
		} else {
			err = rsa.VerifyPSS(pub, sc.hash, digest, sig, &rsa.PSSOptions{SaltLength: sc.saltLen})
		}
		if err != nil {
			return Fail(ReasonBadSignature, "CMS %s signature does not verify with the signer certificate's key", sc.name)
		}
		return nil
	case "ecdsa":
		pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
		if !ok || (pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384()) {
			return Fail(ReasonBadSignature, "CMS %s signature needs a P-256 or P-384 key, the signer certificate has %s", sc.name, envKeyName(leaf.PublicKey))
		}
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			return Fail(ReasonBadSignature, "CMS %s signature does not verify with the signer certificate's key", sc.name)
		}
		return nil
	}
	return Fail(ReasonWeakAlgorithm, "CMS signature scheme not accepted")
}

// cmsToDER re-encodes BER (indefinite lengths, constructed OCTET STRINGs,
// long-form lengths), as streaming signers such as `openssl cms -stream`
// emit, into DER, so that one strict DER parser reads everything. DER
// input comes out unchanged. Constructed encodings of other string types
// are refused, as is anything after the first element.
func cmsToDER(in []byte) ([]byte, error) {
	tag, content, rest, err := cmsBER(in, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing data after the ContentInfo")
	}
	out := make([]byte, 0, len(content)+6)
	return cmsAppendTLV(out, tag, content), nil
}

// cmsIsDER reports whether in is one element that cmsToDER would return
// unchanged: definite minimal lengths, no constructed OCTET STRING or
// other string, no end-of-contents or high tag numbers, no trailing data,
// nesting within cmsMaxDepth. It copies nothing, so DER (what card tools
// and `openssl cms -sign` without -stream write) skips the re-encoding;
// anything else goes through cmsToDER, which normalises or refuses it.
func cmsIsDER(in []byte, depth int) bool {
	rest, ok := cmsDERElement(in, depth)
	return ok && len(rest) == 0
}

func cmsDERElement(in []byte, depth int) (rest []byte, ok bool) {
	if depth > cmsMaxDepth || len(in) < 2 {
		return nil, false
	}
	tag, lb := in[0], in[1]
	if tag == 0 || tag&0x1f == 0x1f {
		return nil, false
	}
	in = in[2:]
	n := int(lb)
	if lb >= 0x80 {
		ll := int(lb & 0x7f)
		if ll == 0 || ll > 4 || len(in) < ll {
			return nil, false // indefinite, or too long to be ours
		}
		n = 0
		for _, b := range in[:ll] {
			n = n<<8 | int(b)
		}
		// Minimal: the short form below 0x80, no leading zero octet.
		if n < 0x80 || in[0] == 0 {
			return nil, false
		}
		in = in[ll:]
	}
	if n > len(in) {
		return nil, false
	}
	body, rest := in[:n], in[n:]
	if tag&0x20 == 0 {
		return rest, true
	}
	if tag&0xc0 == 0 && tag != 0x30 && tag != 0x31 {
		return nil, false // constructed OCTET STRING (re-encoded) or another string (refused)
	}
	for len(body) > 0 {
		if body, ok = cmsDERElement(body, depth+1); !ok {
			return nil, false
		}
	}
	return rest, true
}

// cmsBER decodes one BER element and returns its identifier octet and its
// contents in DER.
func cmsBER(in []byte, depth int) (tag byte, content, rest []byte, err error) {
	if depth > cmsMaxDepth {
		return 0, nil, nil, errors.New("nested too deeply")
	}
	if len(in) < 2 {
		return 0, nil, nil, errors.New("truncated")
	}
	tag = in[0]
	if tag == 0 {
		return 0, nil, nil, errors.New("unexpected end-of-contents")
	}
	if tag&0x1f == 0x1f {
		return 0, nil, nil, errors.New("high tag numbers not supported")
	}
	constructed := tag&0x20 != 0
	lb := in[1]
	in = in[2:]
	if lb == 0x80 {
		if !constructed {
			return 0, nil, nil, errors.New("indefinite length on a primitive element")
		}
		var children []byte
		for {
			if len(in) < 2 {
				return 0, nil, nil, errors.New("truncated: missing end-of-contents")
			}
			if in[0] == 0 && in[1] == 0 {
				in = in[2:]
				break
			}
			ct, cc, r, err := cmsBER(in, depth+1)
			if err != nil {
				return 0, nil, nil, err
			}
			if children, err = cmsAppendChild(children, tag, ct, cc); err != nil {
				return 0, nil, nil, err
			}
			in = r
		}
		tag, err = cmsFinishTag(tag)
		return tag, children, in, err
	}
	var n int
	if lb < 0x80 {
		n = int(lb)
	} else {
		ll := int(lb & 0x7f)
		if ll > 4 || len(in) < ll {
			return 0, nil, nil, errors.New("bad length")
		}
		for _, b := range in[:ll] {
			n = n<<8 | int(b)
		}
		in = in[ll:]
	}
	if n < 0 || n > len(in) {
		return 0, nil, nil, errors.New("truncated")
	}
	body, rest := in[:n], in[n:]
	if !constructed {
		return tag, body, rest, nil
	}
	var children []byte
	for len(body) > 0 {
		ct, cc, r, err := cmsBER(body, depth+1)
		if err != nil {
			return 0, nil, nil, err
		}
		if children, err = cmsAppendChild(children, tag, ct, cc); err != nil {
			return 0, nil, nil, err
		}
		body = r
	}
	tag, err = cmsFinishTag(tag)
	return tag, children, rest, err
}

// cmsAppendChild adds a decoded child to its parent's DER contents. The
// segments of a constructed OCTET STRING are concatenated.
func cmsAppendChild(children []byte, parent, tag byte, content []byte) ([]byte, error) {
	if parent == 0x24 {
		if tag != 0x04 {
			return nil, errors.New("constructed OCTET STRING with a non-OCTET STRING segment")
		}
		return append(children, content...), nil
	}
	return cmsAppendTLV(children, tag, content), nil
}

// cmsFinishTag maps a constructed identifier to its DER form.
func cmsFinishTag(tag byte) (byte, error) {
	if tag&0xc0 != 0 { // context-specific, application, private
		return tag, nil
	}
	switch tag {
	case 0x30, 0x31: // SEQUENCE, SET
		return tag, nil
	case 0x24: // constructed OCTET STRING → primitive
		return 0x04, nil
	}
	return 0, fmt.Errorf("constructed universal tag %d not supported", tag&0x1f)
}

func cmsAppendTLV(out []byte, tag byte, content []byte) []byte {
	out = append(out, tag)
	n := len(content)
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 1<<8:
		out = append(out, 0x81, byte(n))
	case n < 1<<16:
		out = append(out, 0x82, byte(n>>8), byte(n))
	case n < 1<<24:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		out = append(out, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(out, content...)
}
