package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/pkibridge"
)

// Input bounds. Envelopes are small (a JWS or CMS of one certificate is a
// few KiB); the bounds only stop a wrong path from eating memory.
const (
	maxEnvelopeFileBytes = 1 << 20
	maxDataFileBytes     = 16 << 20
	maxCertFileBytes     = pkibridge.MaxCertificateFileBytes
)

func newPKICmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Inspect JPKI certificates and verify signatures offline",
		Long: `The pki commands run the bridge's certificate and signature checks from the shell.

Each prints one JSON object on standard output.
Exit status: 0 accepted, 1 refused (see "reason"), 2 usage or unreadable input.`,
	}
	// Without this, cobra prints help and exits 0 for `watashi pki typo`.
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErr("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	// Flag errors of the pki commands are answered in JSON like every
	// other outcome, since scripts read standard output.
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		writeJSON(c.OutOrStdout(), usageJSON(c, err))
		return &exitError{code: exitUsage, err: err}
	})
	cmd.AddCommand(newPKIInspectCmd(), newPKIVerifyCmd())
	return cmd
}

// policyFlags are the profile knobs shared by inspect and verify.
type policyFlags struct {
	policyOIDs []string
	allowSHA1  bool
}

func (pf *policyFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&pf.policyOIDs, "policy-oid", nil,
		"also accept this certificate policy OID; a bare OID or signature:OID extends the signature\n"+
			"certificate policies, auth:OID the authentication ones (repeatable)")
}

func (pf *policyFlags) policy() (pkibridge.Policy, error) {
	p := pkibridge.DefaultPolicy()
	p.AllowSHA1 = pf.allowSHA1
	for _, v := range pf.policyOIDs {
		kind, oid := "signature", v
		if i := strings.IndexByte(v, ':'); i >= 0 {
			kind, oid = v[:i], v[i+1:]
		}
		if !validOID(oid) {
			return p, usageErr("--policy-oid %q: not a dotted OID", v)
		}
		switch kind {
		case "signature", "sign":
			p.SignaturePolicies = append(p.SignaturePolicies, oid)
		case "authentication", "auth":
			p.AuthenticationPolicies = append(p.AuthenticationPolicies, oid)
		default:
			return p, usageErr("--policy-oid %q: prefix must be signature: or auth:", v)
		}
	}
	return p, nil
}

func validOID(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 18 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// ---- inspect ---------------------------------------------------------------

func newPKIInspectCmd() *cobra.Command {
	var pf policyFlags
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Classify a JPKI certificate and print its profile and basic four facts",
		Long: `inspect reads one certificate (PEM or DER; with several PEM blocks, the first) and prints
what the bridge sees in it: kind (signature or authentication), names, validity, policies,
key usage, key, fingerprint and, for signature certificates, the basic four facts.

It checks the certificate profile only, not trust: use 'watashi pki verify' for that.

Exit status: 0 accepted profile, 1 refused profile or attributes ("reason" says why),
2 unreadable or unparseable file, or usage error.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				err := usageErr("%s takes exactly one FILE, got %d arguments", cmd.CommandPath(), len(args))
				writeJSON(cmd.OutOrStdout(), usageJSON(cmd, err))
				return err
			}
			policy, err := pf.policy()
			if err != nil {
				writeJSON(cmd.OutOrStdout(), usageJSON(cmd, err))
				return err
			}
			data, err := readBounded(args[0], maxCertFileBytes)
			if err != nil {
				err = usageErr("%v", err)
				writeJSON(cmd.OutOrStdout(), usageJSON(cmd, err))
				return err
			}
			out, code := inspectBytes(data, policy)
			writeJSON(cmd.OutOrStdout(), out)
			if code != exitOK {
				return &exitError{code: code, quiet: true}
			}
			return nil
		},
	}
	pf.register(cmd)
	return cmd
}

// inspectOutput is the JSON answer of `pki inspect`.
type inspectOutput struct {
	Certificate *certJSON             `json:"certificate,omitempty"`
	Attributes  *pkibridge.Attributes `json:"attributes,omitempty"`
	Reason      pkibridge.Reason      `json:"reason,omitempty"`
	Error       string                `json:"error,omitempty"`
}

// inspectBytes is the whole inspect decision on bytes already read, kept
// apart from file handling so that it can be fuzzed.
func inspectBytes(data []byte, policy pkibridge.Policy) (inspectOutput, int) {
	certs, err := pkibridge.ParseCertificates(data)
	if err != nil {
		return inspectOutput{Reason: pkibridge.ReasonOf(err), Error: err.Error()}, exitUsage
	}
	cert := certs[0]
	cj, kind, err := describeCertificate(cert, policy)
	out := inspectOutput{Certificate: cj}
	if err != nil {
		out.Reason, out.Error = pkibridge.ReasonOf(err), err.Error()
		return out, exitRefused
	}
	if kind == pkibridge.KindSignature {
		attrs, err := pkibridge.ParseAttributes(cert)
		if err != nil {
			out.Reason, out.Error = pkibridge.ReasonOf(err), err.Error()
			return out, exitRefused
		}
		out.Attributes = attrs
	}
	return out, exitOK
}

// certJSON is the certificate description shared by inspect and verify.
type certJSON struct {
	// Kind is null when the profile is refused.
	Kind              *pkibridge.Kind `json:"kind"`
	Subject           string          `json:"subject"`
	Issuer            string          `json:"issuer"`
	Serial            string          `json:"serial"`
	SerialHex         string          `json:"serial_hex"`
	NotBefore         string          `json:"not_before"`
	NotAfter          string          `json:"not_after"`
	PolicyOIDs        []string        `json:"policy_oids"`
	KeyUsage          []string        `json:"key_usage"`
	PublicKey         publicKeyJSON   `json:"public_key"`
	SignatureAlg      string          `json:"signature_algorithm"`
	SHA256Fingerprint string          `json:"sha256_fingerprint"`
}

type publicKeyJSON struct {
	Algorithm string `json:"algorithm"`
	Bits      int    `json:"bits"`
}

// describeCertificate renders cert and classifies it under policy. The
// description is complete even when classification fails.
func describeCertificate(cert *x509.Certificate, policy pkibridge.Policy) (*certJSON, pkibridge.Kind, error) {
	fp := sha256.Sum256(cert.Raw)
	cj := &certJSON{
		Subject:           rfc2253(cert.RawSubject, cert.Subject),
		Issuer:            rfc2253(cert.RawIssuer, cert.Issuer),
		NotBefore:         cert.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:          cert.NotAfter.UTC().Format(time.RFC3339),
		PolicyOIDs:        policyOIDs(cert),
		KeyUsage:          keyUsageNames(cert.KeyUsage),
		PublicKey:         describeKey(cert.PublicKey),
		SignatureAlg:      cert.SignatureAlgorithm.String(),
		SHA256Fingerprint: hex.EncodeToString(fp[:]),
	}
	if cert.SerialNumber != nil {
		cj.Serial = cert.SerialNumber.String()
		cj.SerialHex = cert.SerialNumber.Text(16)
	}
	kind, err := policy.Classify(cert)
	if err != nil {
		return cj, "", err
	}
	cj.Kind = &kind
	return cj, kind, nil
}

// rfc2253 renders a name from its DER, RDN by RDN. pkix.Name.String
// regroups repeated attribute types into one multi-valued RDN (JPKI names
// repeat OU and L), which would print a name the certificate does not hold.
func rfc2253(raw []byte, parsed pkix.Name) string {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &seq); err != nil || len(rest) != 0 {
		return parsed.String()
	}
	return seq.String()
}

func policyOIDs(cert *x509.Certificate) []string {
	out := []string{}
	for _, p := range cert.Policies {
		out = append(out, p.String())
	}
	if len(out) == 0 {
		for _, p := range cert.PolicyIdentifiers {
			out = append(out, p.String())
		}
	}
	return out
}

// keyUsageNames uses the RFC 5280 names, in bit order.
func keyUsageNames(ku x509.KeyUsage) []string {
	names := []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digitalSignature"},
		{x509.KeyUsageContentCommitment, "nonRepudiation"},
		{x509.KeyUsageKeyEncipherment, "keyEncipherment"},
		{x509.KeyUsageDataEncipherment, "dataEncipherment"},
		{x509.KeyUsageKeyAgreement, "keyAgreement"},
		{x509.KeyUsageCertSign, "keyCertSign"},
		{x509.KeyUsageCRLSign, "cRLSign"},
		{x509.KeyUsageEncipherOnly, "encipherOnly"},
		{x509.KeyUsageDecipherOnly, "decipherOnly"},
	}
	out := []string{}
	for _, n := range names {
		if ku&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func describeKey(pub any) publicKeyJSON {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return publicKeyJSON{Algorithm: "RSA", Bits: k.N.BitLen()}
	case *ecdsa.PublicKey:
		return publicKeyJSON{Algorithm: "ECDSA", Bits: k.Curve.Params().BitSize}
	case ed25519.PublicKey:
		return publicKeyJSON{Algorithm: "Ed25519", Bits: 256}
	}
	return publicKeyJSON{Algorithm: "unknown"}
}

// ---- verify ----------------------------------------------------------------

type verifyFlags struct {
	policyFlags
	anchors       []string
	intermediates []string
	data          string
	cms           string
	jws           string
	sig           string
	cert          string
	hash          string
	crls          []string
	ocspURL       string
	revocation    string
	at            string
	timeout       time.Duration
}

func newPKIVerifyCmd() *cobra.Command {
	var vf verifyFlags
	cmd := &cobra.Command{
		Use:   "verify --anchor FILE --data FILE (--cms FILE | --jws FILE | --sig FILE --cert FILE)",
		Short: "Verify a JPKI signature (JWS, CMS or raw) over given bytes",
		Long: `verify runs the bridge's full check on one signature envelope: the signature over exactly
the --data bytes, chain to the --anchor certificates (matched by key), profile (key usage,
policy OID, key size), validity at --at, revocation and, for signature certificates,
the basic four facts.

Envelopes:
  --jws FILE   compact JWS with an x5c header; --data is the payload it must carry.
  --cms FILE   CMS/PKCS#7 SignedData, DER or PEM. Attached: the content must equal --data.
               Detached: --data is the detached content.
  --sig FILE --cert FILE
               a raw RSA PKCS#1 v1.5 signature over --data (digest per --hash) with the
               signer's certificate (PEM or DER; further PEM certificates are offered as
               intermediates). The signature file is binary, or base64 text (standard or
               URL alphabet, padded or not): if the file, whitespace trimmed, is valid
               base64 that decodes to exactly the key's modulus length, the decoded bytes
               are used; otherwise the file's bytes are the signature.

Revocation: --crl takes a CRL file (PEM or DER) or an http(s) URL (repeatable; fetch
LDAP CRLs to a file first), --ocsp-url an OCSP responder; OCSP is asked first. Each CRL is
paired with the anchor or intermediate whose key signed it. --revocation require (the
default) makes anything but a definite "good" answer invalid, also when no source is
given; prefer lets an unknown answer pass with soft_fail; off skips revocation. --at
applies to certificates, CRLs and OCSP answers alike.

Envelope files (--jws, --cms, --sig, --cert) are limited to 1 MiB and --data to 16 MiB;
larger inputs are refused as malformed (status 1). CRL files are not limited here.

Exit status: 0 valid, 1 invalid ("reason" says why), 2 usage, configuration or
unreadable input.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				err := usageErr("%s takes no arguments, got %q", cmd.CommandPath(), args)
				writeJSON(cmd.OutOrStdout(), usageJSON(cmd, err))
				return err
			}
			out, code, err := runVerify(cmd.Context(), &vf)
			if err != nil {
				writeJSON(cmd.OutOrStdout(), usageJSON(cmd, err))
				return err
			}
			writeJSON(cmd.OutOrStdout(), out)
			if code != exitOK {
				return &exitError{code: code, quiet: true}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&vf.anchors, "anchor", nil, "trust anchor certificate file or folder (PEM or DER; repeatable; required)")
	f.StringArrayVar(&vf.intermediates, "intermediate", nil, "intermediate CA certificate file (repeatable)")
	f.StringVar(&vf.data, "data", "", "file with the exact bytes the signature must cover (required)")
	f.StringVar(&vf.cms, "cms", "", "CMS/PKCS#7 SignedData file (DER or PEM)")
	f.StringVar(&vf.jws, "jws", "", "compact JWS file (RS256/PS256/ES256 with x5c)")
	f.StringVar(&vf.sig, "sig", "", "raw PKCS#1 v1.5 signature file (binary or base64); needs --cert")
	f.StringVar(&vf.cert, "cert", "", "signer certificate for --sig (PEM or DER)")
	f.StringVar(&vf.hash, "hash", "sha256", "digest of a raw --sig: sha256, sha384, sha512 or sha1 (sha1 needs --allow-sha1)")
	f.StringArrayVar(&vf.crls, "crl", nil, "CRL file or http(s) URL (repeatable)")
	f.StringVar(&vf.ocspURL, "ocsp-url", "", "OCSP responder URL")
	f.StringVar(&vf.revocation, "revocation", "require", "what an unknown revocation status means: require, prefer or off")
	f.BoolVar(&vf.allowSHA1, "allow-sha1", false, "accept SHA-1 digests in CMS and raw signatures (the jpki/myna tool's default)")
	f.StringVar(&vf.at, "at", "", "verification time, RFC 3339 (default now)")
	f.DurationVar(&vf.timeout, "timeout", 30*time.Second, "overall limit for CRL and OCSP fetches")
	vf.policyFlags.register(cmd)
	return cmd
}

// verifyOutput is the JSON answer of `pki verify`.
type verifyOutput struct {
	Valid       bool                      `json:"valid"`
	Reason      pkibridge.Reason          `json:"reason,omitempty"`
	Error       string                    `json:"error,omitempty"`
	Format      string                    `json:"format,omitempty"`
	Algorithm   string                    `json:"algorithm,omitempty"`
	Kind        pkibridge.Kind            `json:"kind,omitempty"`
	Certificate *certJSON                 `json:"certificate,omitempty"`
	Attributes  *pkibridge.Attributes     `json:"attributes,omitempty"`
	Revocation  *pkibridge.RevocationInfo `json:"revocation,omitempty"`
	Chain       []string                  `json:"chain,omitempty"`
}

// runVerify returns the answer and status, or an error (status 2) when the
// command line or the configuration it names is unusable.
func runVerify(ctx context.Context, vf *verifyFlags) (*verifyOutput, int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	// Usage first, before touching any file.
	if len(vf.anchors) == 0 {
		return nil, 0, usageErr("--anchor is required")
	}
	if vf.data == "" {
		return nil, 0, usageErr("--data is required")
	}
	n := 0
	for _, s := range []string{vf.cms, vf.jws, vf.sig} {
		if s != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, 0, usageErr("one of --cms, --jws or --sig is required")
	case n > 1:
		return nil, 0, usageErr("--cms, --jws and --sig are mutually exclusive")
	case vf.sig != "" && vf.cert == "":
		return nil, 0, usageErr("--sig needs --cert")
	case vf.sig == "" && vf.cert != "":
		return nil, 0, usageErr("--cert goes with --sig only")
	}
	mode, err := pkibridge.ParseRevocationMode(vf.revocation)
	if err != nil || vf.revocation == "" {
		return nil, 0, usageErr("--revocation %q: want require, prefer or off", vf.revocation)
	}
	hash, err := parseHash(vf.hash)
	if err != nil {
		return nil, 0, err
	}
	now := time.Now
	if vf.at != "" {
		at, err := time.Parse(time.RFC3339, vf.at)
		if err != nil {
			return nil, 0, usageErr("--at %q: want RFC 3339, e.g. 2026-04-01T09:00:00Z", vf.at)
		}
		now = func() time.Time { return at }
	}
	if vf.timeout <= 0 {
		return nil, 0, usageErr("--timeout must be positive")
	}
	policy, err := vf.policy()
	if err != nil {
		return nil, 0, err
	}

	// Configuration: anchors, intermediates, revocation sources.
	anchors, err := pkibridge.LoadAnchors(vf.anchors...)
	if err != nil {
		return nil, 0, usageErr("--anchor: %v", err)
	}
	var intermediates []*x509.Certificate
	for _, p := range vf.intermediates {
		data, err := readBounded(p, maxCertFileBytes)
		if err != nil {
			return nil, 0, usageErr("--intermediate: %v", err)
		}
		certs, err := pkibridge.ParseCertificates(data)
		if err != nil {
			return nil, 0, usageErr("--intermediate %s: %v", p, err)
		}
		intermediates = append(intermediates, certs...)
	}
	checker, err := buildChecker(vf, anchors, intermediates, now)
	if err != nil {
		return nil, 0, err
	}

	// Inputs. A file that cannot be read is a usage problem; one that is
	// read but too large is a refused envelope.
	data, err := readBounded(vf.data, maxDataFileBytes)
	if err != nil {
		return refusedOrUsage("--data", err)
	}
	var env *pkibridge.Envelope
	var leaf *x509.Certificate
	switch {
	case vf.jws != "":
		raw, err := readBounded(vf.jws, maxEnvelopeFileBytes)
		if err != nil {
			return refusedOrUsage("--jws", err)
		}
		env, err = pkibridge.ParseJWS(raw, policy)
		if err != nil {
			return refused(err, jwsLeafForDisplay(raw), policy), exitRefused, nil
		}
	case vf.cms != "":
		raw, err := readBounded(vf.cms, maxEnvelopeFileBytes)
		if err != nil {
			return refusedOrUsage("--cms", err)
		}
		// --data is the content of a detached signature; for an attached
		// one, ParseCMS and Verify both insist the carried content equals it.
		env, err = pkibridge.ParseCMS(raw, data, policy)
		if err != nil {
			return refused(err, nil, policy), exitRefused, nil
		}
	default:
		certData, err := readBounded(vf.cert, maxEnvelopeFileBytes)
		if err != nil {
			return refusedOrUsage("--cert", err)
		}
		sigData, err := readBounded(vf.sig, maxEnvelopeFileBytes)
		if err != nil {
			return refusedOrUsage("--sig", err)
		}
		certs, err := pkibridge.ParseCertificates(certData)
		if err != nil {
			return refused(err, nil, policy), exitRefused, nil
		}
		leaf = certs[0]
		intermediates = append(intermediates, certs[1:]...)
		env, err = pkibridge.ParseRaw(decodeSignature(sigData, leaf), leaf, data, hash, policy)
		if err != nil {
			return refused(err, leaf, policy), exitRefused, nil
		}
	}
	if env.Leaf != nil {
		leaf = env.Leaf
	}

	v := &pkibridge.Verifier{
		Anchors:       anchors,
		Intermediates: intermediates,
		Policy:        policy,
		Mode:          mode,
		Now:           now,
		Logger:        slog.New(slog.DiscardHandler),
	}
	var rec *recordingChecker
	if checker != nil {
		rec = &recordingChecker{inner: checker}
		v.Revocation = rec
	}
	ctx, cancel := context.WithTimeout(ctx, vf.timeout)
	defer cancel()
	res, err := v.Verify(ctx, env, data)
	if err != nil {
		out := refused(err, leaf, policy)
		if rec != nil && rec.asked {
			info := rec.info
			if r := pkibridge.ReasonOf(err); r == pkibridge.ReasonRevocationUnknown && info.Status == "" {
				info.Status = pkibridge.StatusUnknown
			}
			out.Revocation = &info
		}
		return out, exitRefused, nil
	}
	if rec != nil && res.Revocation.SoftFail && res.Revocation.Detail == "" {
		res.Revocation.Detail = rec.info.Detail // why it was let through
	}
	out := &verifyOutput{
		Valid:      true,
		Format:     res.Format,
		Algorithm:  res.Algorithm,
		Kind:       res.Kind,
		Attributes: res.Attributes,
		Revocation: &res.Revocation,
	}
	if res.Leaf != nil {
		out.Certificate, _, _ = describeCertificate(res.Leaf, policy)
	}
	for _, c := range res.Chain {
		out.Chain = append(out.Chain, rfc2253(c.RawSubject, c.Subject))
	}
	return out, exitOK, nil
}

// refused describes a refusal, with whatever can be said about the leaf.
func refused(err error, leaf *x509.Certificate, policy pkibridge.Policy) *verifyOutput {
	out := &verifyOutput{Reason: pkibridge.ReasonOf(err), Error: err.Error()}
	if leaf != nil {
		cj, kind, cerr := describeCertificate(leaf, policy)
		out.Certificate = cj
		if cerr == nil && kind == pkibridge.KindSignature {
			if attrs, aerr := pkibridge.ParseAttributes(leaf); aerr == nil {
				out.Attributes = attrs
			}
		}
	}
	return out
}

// jwsLeafForDisplay digs the x5c leaf out of a JWS that ParseJWS refused,
// only so that the answer can say which certificate was involved (e.g.
// whose key did not verify). Nothing here is trusted or checked; any
// problem just means no certificate in the answer.
func jwsLeafForDisplay(compact []byte) *x509.Certificate {
	hdr, _, ok := bytes.Cut(bytes.TrimSpace(compact), []byte("."))
	if !ok {
		return nil
	}
	js, err := base64.RawURLEncoding.DecodeString(string(hdr))
	if err != nil {
		return nil
	}
	var h struct {
		X5C []string `json:"x5c"`
	}
	if json.Unmarshal(js, &h) != nil || len(h.X5C) == 0 {
		return nil
	}
	der, err := base64.StdEncoding.DecodeString(h.X5C[0])
	if err != nil {
		return nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil
	}
	return cert
}

// recordingChecker keeps the last answer, because Verify returns no
// Result on failure and the operator wants to see which source said
// "revoked" or why none could answer.
type recordingChecker struct {
	inner pkibridge.RevocationChecker
	asked bool
	info  pkibridge.RevocationInfo
}

func (r *recordingChecker) CheckRevocation(ctx context.Context, leaf, issuer *x509.Certificate) (pkibridge.RevocationInfo, error) {
	info, err := r.inner.CheckRevocation(ctx, leaf, issuer)
	r.asked, r.info = true, info
	if err != nil && info.Detail == "" {
		r.info.Detail = err.Error()
	}
	return info, err
}

// errTooLarge marks a file over its bound: read, but refused.
var errTooLarge = errors.New("file too large")

func refusedOrUsage(flag string, err error) (*verifyOutput, int, error) {
	if errors.Is(err, errTooLarge) {
		e := pkibridge.Wrap(pkibridge.ReasonMalformed, err, "%s", flag)
		return &verifyOutput{Reason: pkibridge.ReasonMalformed, Error: e.Error()}, exitRefused, nil
	}
	return nil, 0, usageErr("%s: %v", flag, err)
}

// readBounded reads at most limit bytes of a regular file (or stdin for
// "-" is deliberately not supported: every input is named).
func readBounded(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file", name)
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s exceeds %d bytes: %w", name, limit, errTooLarge)
	}
	return data, nil
}

func parseHash(s string) (crypto.Hash, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "-", "")) {
	case "sha256":
		return crypto.SHA256, nil
	case "sha384":
		return crypto.SHA384, nil
	case "sha512":
		return crypto.SHA512, nil
	case "sha1":
		return crypto.SHA1, nil
	}
	return 0, usageErr("--hash %q: want sha256, sha384, sha512 or sha1", s)
}

// decodeSignature turns a --sig file into signature bytes: base64 text
// whose decoding has exactly the key's modulus length, else the raw bytes.
// Trying base64 first is safe because a binary RSA signature essentially
// never consists of base64 characters only, and if it did, its decoding
// would not have the modulus length.
func decodeSignature(data []byte, leaf *x509.Certificate) []byte {
	size := 0
	switch k := leaf.PublicKey.(type) {
	case *rsa.PublicKey:
		size = k.Size()
	default:
		return data
	}
	text := strings.Join(strings.Fields(string(data)), "")
	if text == "" {
		return data
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if dec, err := enc.DecodeString(text); err == nil && len(dec) == size {
			return dec
		}
	}
	return data
}

// usageJSON is the answer printed with status 2. verify's answer keeps
// its "valid" key so that a script reading only that key stays correct.
func usageJSON(cmd *cobra.Command, err error) map[string]any {
	out := map[string]any{"error": err.Error()}
	if cmd.Name() == "verify" {
		out["valid"] = false
	}
	return out
}

// buildChecker wires --crl and --ocsp-url into one revocation checker, nil
// when neither is given (the Verifier then applies the mode to "no
// source"). CRLs pair with whichever anchor or intermediate signed them,
// by key, so several anchor generations can be given at once.
func buildChecker(vf *verifyFlags, anchors *pkibridge.Anchors, intermediates []*x509.Certificate, now func() time.Time) (pkibridge.RevocationChecker, error) {
	if len(vf.crls) == 0 && vf.ocspURL == "" {
		return nil, nil
	}
	var urls []string
	if vf.ocspURL != "" {
		urls = []string{vf.ocspURL}
	}
	issuers := append(anchors.Certificates(), intermediates...)
	chk, err := pkibridge.NewChecker(vf.crls, urls, issuers, pkibridge.CheckerOptions{
		CRL:  pkibridge.CRLOptions{Now: now, Timeout: vf.timeout},
		OCSP: pkibridge.OCSPOptions{Now: now, Timeout: vf.timeout},
	})
	if err != nil {
		return nil, usageErr("revocation sources: %v", err)
	}
	return chk, nil
}
