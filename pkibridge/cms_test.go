package pkibridge_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

var (
	envOIDData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	envOIDSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	envOIDContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	envOIDMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	envOIDSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	envOIDSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	envOIDSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	envOIDSHA384        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	envOIDSHA224        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	envOIDMD5           = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
	envOIDRSA           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	envOIDMD5RSA        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}
	envOIDMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	envOIDPSS           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	envOIDSHA256RSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	envOIDSHA384RSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	envOIDECDSA256      = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	envOIDDSA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 2}
)

// envCMS describes a SignedData for envBuildCMS. Zero values give a valid
// attached SHA-256 RSA SignedData with contentType and messageDigest.
type envCMS struct {
	key        crypto.Signer
	cert       *x509.Certificate // signer identifier source
	certs      [][]byte          // certificates field; nil means [cert]
	noCerts    bool
	content    []byte
	detached   bool
	eType      asn1.ObjectIdentifier
	version    int64
	digestOID  asn1.ObjectIdentifier
	digestPar  []byte // raw parameters element; nil means NULL
	hash       crypto.Hash
	sigOID     asn1.ObjectIdentifier
	sigPar     []byte // raw parameters element; nil means NULL for RSA, absent otherwise
	noSigPar   bool
	pssSalt    int      // sign with PSS
	attrs      [][]byte // nil means the two required attributes
	noAttrs    bool
	ski        []byte
	signers    int // SignerInfo copies; default 1, -1 none
	crls       []byte
	unsigned   bool
	corruptSig bool
}

func envAttr(oid asn1.ObjectIdentifier, values ...func(*cryptobyte.Builder)) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for _, v := range values {
				v(b)
			}
		})
	})
	return b.BytesOrPanic()
}

func envOIDValue(oid asn1.ObjectIdentifier) func(*cryptobyte.Builder) {
	return func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oid) }
}

func envOctets(v []byte) func(*cryptobyte.Builder) {
	return func(b *cryptobyte.Builder) { b.AddASN1OctetString(v) }
}

func envDigestOf(h crypto.Hash, data []byte) []byte {
	d := h.New()
	d.Write(data)
	return d.Sum(nil)
}

func envAlg(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, params []byte, absent bool) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		switch {
		case params != nil:
			b.AddBytes(params)
		case !absent:
			b.AddASN1NULL()
		}
	})
}

// envBuildCMS signs a SignedData shaped by o, including shapes no honest
// signer makes.
func envBuildCMS(t testing.TB, o envCMS) []byte {
	t.Helper()
	if o.hash == 0 {
		o.hash = crypto.SHA256
	}
	if o.digestOID == nil {
		o.digestOID = envOIDSHA256
	}
	if o.sigOID == nil {
		o.sigOID = envOIDRSA
	}
	if o.eType == nil {
		o.eType = envOIDData
	}
	if o.version == 0 {
		o.version = 1
	}
	if o.signers == 0 {
		o.signers = 1
	}
	if o.attrs == nil && !o.noAttrs {
		o.attrs = [][]byte{
			envAttr(envOIDContentType, envOIDValue(envOIDData)),
			envAttr(envOIDMessageDigest, envOctets(envDigestOf(o.hash, o.content))),
		}
	}
	var signed, attrsImplicit []byte
	if o.noAttrs {
		signed = o.content
	} else {
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for _, a := range o.attrs {
				b.AddBytes(a)
			}
		})
		signed = b.BytesOrPanic()
		attrsImplicit = append([]byte{0xa0}, signed[1:]...)
	}
	var opts crypto.SignerOpts = o.hash
	if o.pssSalt != 0 {
		opts = &rsa.PSSOptions{SaltLength: o.pssSalt, Hash: o.hash}
	}
	sig, err := o.key.Sign(rand.Reader, envDigestOf(o.hash, signed), opts)
	if err != nil {
		t.Fatal(err)
	}
	if o.corruptSig {
		sig[len(sig)/2] ^= 0x40
	}
	certs := o.certs
	if certs == nil && !o.noCerts {
		certs = [][]byte{o.cert.Raw}
	}
	sigAbsent := o.noSigPar || (o.sigPar == nil && !o.sigOID.Equal(envOIDRSA) && !o.sigOID.Equal(envOIDSHA256RSA) &&
		!o.sigOID.Equal(envOIDSHA384RSA) && !o.sigOID.Equal(envOIDMD5RSA))

	b := cryptobyte.NewBuilder(nil)
	tag0 := cbasn1.Tag(0).ContextSpecific().Constructed()
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(envOIDSignedData)
		b.AddASN1(tag0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(o.version)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { envAlg(b, o.digestOID, o.digestPar, false) })
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(o.eType)
					if !o.detached {
						b.AddASN1(tag0, func(b *cryptobyte.Builder) { b.AddASN1OctetString(o.content) })
					}
				})
				if !o.noCerts {
					b.AddASN1(tag0, func(b *cryptobyte.Builder) {
						for _, c := range certs {
							b.AddBytes(c)
						}
					})
				}
				if o.crls != nil {
					b.AddBytes(o.crls)
				}
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					for i := 0; i < o.signers; i++ {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							if o.ski != nil {
								b.AddASN1Int64(3)
								b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(o.ski) })
							} else {
								b.AddASN1Int64(1)
								b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
									b.AddBytes(o.cert.RawIssuer)
									b.AddASN1BigInt(o.cert.SerialNumber)
								})
							}
							envAlg(b, o.digestOID, o.digestPar, false)
							if !o.noAttrs {
								b.AddBytes(attrsImplicit)
							}
							envAlg(b, o.sigOID, o.sigPar, sigAbsent)
							b.AddASN1OctetString(sig)
							if o.unsigned {
								b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
									b.AddBytes(envAttr(envOIDSigningTime, func(b *cryptobyte.Builder) { b.AddASN1UTCTime(time.Now()) }))
								})
							}
						})
					}
				})
			})
		})
	})
	return b.BytesOrPanic()
}

// envPSSParams encodes RSASSA-PSS-params with the given hash for both the
// message and MGF1.
func envPSSParams(hashOID asn1.ObjectIdentifier, mgfHashOID asn1.ObjectIdentifier, salt int64) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { envAlg(b, hashOID, nil, false) })
		b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(envOIDMGF1)
				envAlg(b, mgfHashOID, nil, false)
			})
		})
		b.AddASN1(cbasn1.Tag(2).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddASN1Int64(salt) })
	})
	return b.BytesOrPanic()
}

func TestParseCMSCrafted(t *testing.T) {
	f := envFixtures(t)
	content := []byte("watashi identity proofing t-7")
	base := envCMS{key: f.leaf.Key, cert: f.leaf.Cert, content: content}
	with := func(mod func(*envCMS)) []byte {
		o := base
		mod(&o)
		return envBuildCMS(t, o)
	}
	md := envDigestOf(crypto.SHA256, content)
	ct := envAttr(envOIDContentType, envOIDValue(envOIDData))
	mdAttr := envAttr(envOIDMessageDigest, envOctets(md))

	// A certificate with the leaf's issuer and serial but another key: a
	// signer identifier that matches two certificates is ambiguous.
	twinTmpl := &x509.Certificate{SerialNumber: f.leaf.Cert.SerialNumber, Subject: f.leaf.Cert.Subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), AuthorityKeyId: f.ca.Cert.SubjectKeyId}
	twinDER, err := x509.CreateCertificate(rand.Reader, twinTmpl, f.ca.Cert, f.other.Cert.PublicKey, f.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	attrCert := []byte{0xa1, 0x03, 0x02, 0x01, 0x00}

	cases := []struct {
		name     string
		cms      []byte
		detached []byte
		policy   func(*pkibridge.Policy)
		want     pkibridge.Reason
		alg      string
		extra    int
	}{
		{name: "baseline", cms: with(func(*envCMS) {}), alg: "sha256WithRSA"},
		{name: "sha256WithRSAEncryption OID", cms: with(func(o *envCMS) { o.sigOID = envOIDSHA256RSA }), alg: "sha256WithRSA"},
		{name: "digest params absent", cms: with(func(o *envCMS) { o.digestPar = []byte{} }), alg: "sha256WithRSA"},
		{name: "sha384", cms: with(func(o *envCMS) {
			o.hash, o.digestOID, o.sigOID = crypto.SHA384, envOIDSHA384, envOIDSHA384RSA
		}), alg: "sha384WithRSA"},
		{name: "sha1 allowed", cms: with(func(o *envCMS) { o.hash, o.digestOID = crypto.SHA1, envOIDSHA1 }),
			policy: func(p *pkibridge.Policy) { p.AllowSHA1 = true }, alg: "sha1WithRSA"},
		{name: "no signed attributes", cms: with(func(o *envCMS) { o.noAttrs = true }), alg: "sha256WithRSA"},
		{name: "extra signed attribute", cms: with(func(o *envCMS) {
			o.attrs = [][]byte{ct, mdAttr, envAttr(envOIDSigningTime, func(b *cryptobyte.Builder) { b.AddASN1UTCTime(time.Now()) })}
		}), alg: "sha256WithRSA"},
		{name: "unsigned attributes", cms: with(func(o *envCMS) { o.unsigned = true }), alg: "sha256WithRSA"},
		{name: "crls ignored", cms: with(func(o *envCMS) { o.crls = []byte{0xa1, 0x00} }), alg: "sha256WithRSA"},
		{name: "CA as extra", cms: with(func(o *envCMS) { o.certs = [][]byte{f.ca.Cert.Raw, f.leaf.Cert.Raw} }), alg: "sha256WithRSA", extra: 1},
		{name: "leaf twice", cms: with(func(o *envCMS) { o.certs = [][]byte{f.leaf.Cert.Raw, f.leaf.Cert.Raw} }), alg: "sha256WithRSA"},
		{name: "subjectKeyIdentifier", cms: envBuildCMS(t, envCMS{key: f.ca.Key, cert: f.ca.Cert, content: content, ski: f.ca.Cert.SubjectKeyId}),
			alg: "sha256WithRSA"},
		{name: "PSS", cms: with(func(o *envCMS) {
			o.sigOID, o.sigPar, o.pssSalt = envOIDPSS, envPSSParams(envOIDSHA256, envOIDSHA256, 32), 32
		}), alg: "sha256WithRSAPSS"},
		{name: "ECDSA P-256", cms: envBuildCMS(t, envCMS{key: f.ec.Key, cert: f.ec.Cert, content: content, sigOID: envOIDECDSA256}), alg: "ecdsaWithSHA256"},
		{name: "detached", cms: with(func(o *envCMS) { o.detached = true }), detached: content, alg: "sha256WithRSA"},
		{name: "attached and equal detached", cms: with(func(*envCMS) {}), detached: content, alg: "sha256WithRSA"},

		{name: "contentType missing", cms: with(func(o *envCMS) { o.attrs = [][]byte{mdAttr} }), want: pkibridge.ReasonMalformed},
		{name: "messageDigest missing", cms: with(func(o *envCMS) { o.attrs = [][]byte{ct} }), want: pkibridge.ReasonMalformed},
		{name: "contentType not id-data", cms: with(func(o *envCMS) {
			o.attrs = [][]byte{envAttr(envOIDContentType, envOIDValue(envOIDSignedData)), mdAttr}
		}), want: pkibridge.ReasonMalformed},
		{name: "contentType two values", cms: with(func(o *envCMS) {
			o.attrs = [][]byte{envAttr(envOIDContentType, envOIDValue(envOIDData), envOIDValue(envOIDData)), mdAttr}
		}), want: pkibridge.ReasonMalformed},
		{name: "messageDigest twice", cms: with(func(o *envCMS) {
			o.attrs = [][]byte{ct, mdAttr, envAttr(envOIDMessageDigest, envOctets(make([]byte, 32)))}
		}), want: pkibridge.ReasonMalformed},
		{name: "messageDigest two values", cms: with(func(o *envCMS) {
			o.attrs = [][]byte{ct, envAttr(envOIDMessageDigest, envOctets(md), envOctets(md))}
		}), want: pkibridge.ReasonMalformed},
		{name: "messageDigest of other content", cms: with(func(o *envCMS) {
			o.attrs = [][]byte{ct, envAttr(envOIDMessageDigest, envOctets(envDigestOf(crypto.SHA256, []byte("other"))))}
		}), want: pkibridge.ReasonBadSignature},
		{name: "messageDigest not an OCTET STRING", cms: with(func(o *envCMS) {
			o.attrs = [][]byte{ct, envAttr(envOIDMessageDigest, envOIDValue(envOIDData))}
		}), want: pkibridge.ReasonMalformed},
		{name: "empty signed attributes", cms: with(func(o *envCMS) { o.attrs = [][]byte{} }), want: pkibridge.ReasonMalformed},
		{name: "eContentType not id-data", cms: with(func(o *envCMS) { o.eType = envOIDSignedData }), want: pkibridge.ReasonMalformed},
		{name: "signature hash differs from digest", cms: with(func(o *envCMS) { o.sigOID = envOIDSHA384RSA }), want: pkibridge.ReasonMalformed},
		{name: "sha1 refused", cms: with(func(o *envCMS) { o.hash, o.digestOID = crypto.SHA1, envOIDSHA1 }), want: pkibridge.ReasonWeakAlgorithm},
		{name: "md5 refused", cms: with(func(o *envCMS) { o.hash, o.digestOID = crypto.MD5, envOIDMD5 }),
			policy: func(p *pkibridge.Policy) { p.AllowSHA1 = true }, want: pkibridge.ReasonWeakAlgorithm},
		{name: "sha224 refused", cms: with(func(o *envCMS) { o.hash, o.digestOID = crypto.SHA224, envOIDSHA224 }), want: pkibridge.ReasonWeakAlgorithm},
		{name: "unknown digest", cms: with(func(o *envCMS) { o.digestOID = asn1.ObjectIdentifier{1, 2, 3, 4} }), want: pkibridge.ReasonWeakAlgorithm},
		{name: "md5WithRSA", cms: with(func(o *envCMS) { o.sigOID = envOIDMD5RSA }), want: pkibridge.ReasonWeakAlgorithm},
		{name: "DSA", cms: with(func(o *envCMS) { o.sigOID = envOIDDSA256 }), want: pkibridge.ReasonWeakAlgorithm},
		{name: "digest parameters", cms: with(func(o *envCMS) { o.digestPar = []byte{0x02, 0x01, 0x00} }), want: pkibridge.ReasonMalformed},
		{name: "rsaEncryption parameters", cms: with(func(o *envCMS) { o.sigPar = []byte{0x02, 0x01, 0x00} }), want: pkibridge.ReasonMalformed},
		{name: "PSS without parameters", cms: with(func(o *envCMS) { o.sigOID, o.pssSalt = envOIDPSS, 32 }), want: pkibridge.ReasonMalformed},
		{name: "PSS hash differs", cms: with(func(o *envCMS) {
			o.sigOID, o.sigPar, o.pssSalt = envOIDPSS, envPSSParams(envOIDSHA384, envOIDSHA384, 32), 32
		}), want: pkibridge.ReasonMalformed},
		{name: "PSS MGF1 hash differs", cms: with(func(o *envCMS) {
			o.sigOID, o.sigPar, o.pssSalt = envOIDPSS, envPSSParams(envOIDSHA256, envOIDSHA1, 32), 32
		}), policy: func(p *pkibridge.Policy) { p.AllowSHA1 = true }, want: pkibridge.ReasonMalformed},
		{name: "PSS declared salt differs", cms: with(func(o *envCMS) {
			o.sigOID, o.sigPar, o.pssSalt = envOIDPSS, envPSSParams(envOIDSHA256, envOIDSHA256, 20), 32
		}), want: pkibridge.ReasonBadSignature},
		{name: "PSS salt 0", cms: with(func(o *envCMS) {
			o.sigOID, o.sigPar, o.pssSalt = envOIDPSS, envPSSParams(envOIDSHA256, envOIDSHA256, 0), 32
		}), want: pkibridge.ReasonMalformed},
		{name: "PKCS1 declared, PSS signed", cms: with(func(o *envCMS) { o.pssSalt = 32 }), want: pkibridge.ReasonBadSignature},
		{name: "ECDSA declared, RSA key", cms: with(func(o *envCMS) { o.sigOID = envOIDECDSA256 }), want: pkibridge.ReasonBadSignature},
		{name: "RSA declared, EC key", cms: envBuildCMS(t, envCMS{key: f.ec.Key, cert: f.ec.Cert, content: content, sigOID: envOIDRSA}), want: pkibridge.ReasonBadSignature},
		{name: "corrupt signature", cms: with(func(o *envCMS) { o.corruptSig = true }), want: pkibridge.ReasonBadSignature},
		{name: "corrupt signature without attributes", cms: with(func(o *envCMS) { o.corruptSig, o.noAttrs = true, true }), want: pkibridge.ReasonBadSignature},
		{name: "signed by another key", cms: with(func(o *envCMS) { o.key = f.other.Key }), want: pkibridge.ReasonBadSignature},
		{name: "rsa-1024 signer", cms: envBuildCMS(t, envCMS{key: f.weak.Key, cert: f.weak.Cert, content: content}), want: pkibridge.ReasonWeakKey},
		{name: "two signers", cms: with(func(o *envCMS) { o.signers = 2 }), want: pkibridge.ReasonMalformed},
		{name: "no signers", cms: with(func(o *envCMS) { o.signers = -1 }), want: pkibridge.ReasonMalformed},
		{name: "no certificates", cms: with(func(o *envCMS) { o.noCerts = true }), want: pkibridge.ReasonMalformed},
		{name: "empty certificates", cms: with(func(o *envCMS) { o.certs = [][]byte{} }), want: pkibridge.ReasonMalformed},
		{name: "signer certificate absent", cms: with(func(o *envCMS) { o.certs = [][]byte{f.ca.Cert.Raw, f.other.Cert.Raw} }), want: pkibridge.ReasonMalformed},
		{name: "ambiguous signer", cms: with(func(o *envCMS) { o.certs = [][]byte{f.leaf.Cert.Raw, twinDER} }), want: pkibridge.ReasonMalformed},
		{name: "six certificates", cms: with(func(o *envCMS) {
			o.certs = [][]byte{f.leaf.Cert.Raw, f.ca.Cert.Raw, f.ca.Cert.Raw, f.ca.Cert.Raw, f.ca.Cert.Raw, f.ca.Cert.Raw}
		}), want: pkibridge.ReasonMalformed},
		{name: "attribute certificate", cms: with(func(o *envCMS) { o.certs = [][]byte{f.leaf.Cert.Raw, attrCert} }), want: pkibridge.ReasonMalformed},
		{name: "garbage certificate", cms: with(func(o *envCMS) { o.certs = [][]byte{f.leaf.Cert.Raw, {0x30, 0x03, 0x02, 0x01, 0x00}} }), want: pkibridge.ReasonMalformed},
		{name: "subjectKeyIdentifier of no certificate", cms: with(func(o *envCMS) { o.ski = []byte{1, 2, 3, 4} }), want: pkibridge.ReasonMalformed},
		{name: "SignedData version 99", cms: with(func(o *envCMS) { o.version = 99 }), want: pkibridge.ReasonMalformed},
		{name: "detached without content", cms: with(func(o *envCMS) { o.detached = true }), want: pkibridge.ReasonMalformed},
		{name: "detached with other content", cms: with(func(o *envCMS) { o.detached = true }), detached: []byte("watashi identity proofing t-8"), want: pkibridge.ReasonBadSignature},
		{name: "attached differs from detached", cms: with(func(*envCMS) {}), detached: []byte("something else"), want: pkibridge.ReasonBadSignature},
		{name: "attached and empty detached", cms: with(func(*envCMS) {}), detached: []byte{}, want: pkibridge.ReasonBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pkibridge.DefaultPolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			env, err := pkibridge.ParseCMS(tc.cms, tc.detached, p)
			envWant(t, err, tc.want)
			if tc.want != "" {
				if env != nil {
					t.Fatal("envelope returned with an error")
				}
				return
			}
			if env.Format != "cms" || env.Algorithm != tc.alg || !bytes.Equal(env.Content, content) ||
				len(env.Extra) != tc.extra || env.Leaf == nil {
				t.Fatalf("envelope %+v", env)
			}
		})
	}
}

// envOpenSSLFiles writes the simulator CA and the fixture leaves with their
// keys to dir, for openssl to sign with.
func envOpenSSLFiles(t *testing.T, dir string) {
	t.Helper()
	f := envFixtures(t)
	envWriteCert(t, dir, "ca.pem", f.ca.Cert)
	envWriteKey(t, dir, "ca.key", f.ca.Key)
	for name, l := range map[string]struct {
		cert *x509.Certificate
		key  crypto.Signer
	}{"leaf": {f.leaf.Cert, f.leaf.Key}, "other": {f.other.Cert, f.other.Key}, "ec": {f.ec.Cert, f.ec.Key}, "weak": {f.weak.Cert, f.weak.Key}} {
		envWriteCert(t, dir, name+".pem", l.cert)
		envWriteKey(t, dir, name+".key", l.key)
	}
}

// envOpenSSLTwins issues two JPKI-like leaves with openssl req/x509 under
// the simulator CA: same issuer and serial, different keys, with a
// subjectKeyIdentifier (which jpkisim leaves lack).
func envOpenSSLTwins(t *testing.T, dir string) {
	t.Helper()
	envWriteFile(t, dir, "ext.cnf", []byte("keyUsage=critical,digitalSignature,nonRepudiation\n"+
		"certificatePolicies="+pkibridge.PolicySignature+"\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"))
	for _, n := range []string{"osslA", "osslB"} {
		envOpenSSL(t, dir, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", n+".key",
			"-subj", "/C=JP/O=JPKI-SIMULATOR/CN="+n, "-out", n+".csr")
		envOpenSSL(t, dir, "x509", "-req", "-in", n+".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
			"-set_serial", "4242", "-days", "30", "-extfile", "ext.cnf", "-out", n+".pem")
	}
}

func TestParseCMSOpenSSL(t *testing.T) {
	envNeedOpenSSL(t)
	f := envFixtures(t)
	dir := t.TempDir()
	envOpenSSLFiles(t, dir)
	envOpenSSLTwins(t, dir)
	content := []byte("watashi transaction t-9\x00\xff binary\r\n")
	envWriteFile(t, dir, "data", content)

	sign := func(extra ...string) []string {
		return append([]string{"cms", "-sign", "-binary", "-in", "data", "-signer", "leaf.pem", "-inkey", "leaf.key"}, extra...)
	}
	osslA := envReadCert(t, filepath.Join(dir, "osslA.pem"))
	cases := []struct {
		name     string
		args     []string
		detached []byte
		policy   func(*pkibridge.Policy)
		want     pkibridge.Reason
		alg      string
		hash     crypto.Hash
		extra    int
		leaf     *x509.Certificate
	}{
		{name: "detached DER", args: sign("-md", "sha256", "-outform", "DER"), detached: content, alg: "sha256WithRSA"},
		{name: "attached DER", args: sign("-md", "sha256", "-outform", "DER", "-nodetach"), alg: "sha256WithRSA"},
		{name: "attached PEM", args: sign("-md", "sha256", "-outform", "PEM", "-nodetach"), alg: "sha256WithRSA"},
		{name: "detached PEM", args: sign("-md", "sha256", "-outform", "PEM"), detached: content, alg: "sha256WithRSA"},
		{name: "attached and detached equal", args: sign("-md", "sha256", "-outform", "DER", "-nodetach"), detached: content, alg: "sha256WithRSA"},
		{name: "noattr", args: sign("-md", "sha256", "-outform", "DER", "-nodetach", "-noattr"), alg: "sha256WithRSA"},
		{name: "noattr detached", args: sign("-md", "sha256", "-outform", "DER", "-noattr"), detached: content, alg: "sha256WithRSA"},
		{name: "nosmimecap", args: sign("-md", "sha256", "-outform", "DER", "-nodetach", "-nosmimecap"), alg: "sha256WithRSA"},
		{name: "sha384", args: sign("-md", "sha384", "-outform", "DER", "-nodetach"), alg: "sha384WithRSA", hash: crypto.SHA384},
		{name: "sha512", args: sign("-md", "sha512", "-outform", "DER", "-nodetach"), alg: "sha512WithRSA", hash: crypto.SHA512},
		{name: "sha1 refused", args: sign("-md", "sha1", "-outform", "DER", "-nodetach"), want: pkibridge.ReasonWeakAlgorithm},
		{name: "sha1 allowed", args: sign("-md", "sha1", "-outform", "DER", "-nodetach"), policy: func(p *pkibridge.Policy) { p.AllowSHA1 = true },
			alg: "sha1WithRSA", hash: crypto.SHA1},
		{name: "CA in certfile", args: sign("-md", "sha256", "-outform", "DER", "-nodetach", "-certfile", "ca.pem"), alg: "sha256WithRSA", extra: 1},
		{name: "BER stream attached", args: sign("-md", "sha256", "-outform", "DER", "-nodetach", "-stream"), alg: "sha256WithRSA"},
		{name: "BER stream detached", args: sign("-md", "sha256", "-outform", "DER", "-stream"), detached: content, alg: "sha256WithRSA"},
		{name: "BER stream noattr", args: sign("-md", "sha256", "-outform", "DER", "-nodetach", "-stream", "-noattr"), alg: "sha256WithRSA"},
		{name: "PSS max salt", args: sign("-md", "sha256", "-outform", "DER", "-nodetach", "-keyopt", "rsa_padding_mode:pss"), alg: "sha256WithRSAPSS"},
		{name: "PSS digest salt", args: sign("-md", "sha256", "-outform", "DER", "-nodetach", "-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:digest"), alg: "sha256WithRSAPSS"},
		{name: "ECDSA", args: []string{"cms", "-sign", "-binary", "-in", "data", "-signer", "ec.pem", "-inkey", "ec.key", "-md", "sha256", "-outform", "DER", "-nodetach"},
			alg: "ecdsaWithSHA256", leaf: f.ec.Cert},
		{name: "keyid", args: []string{"cms", "-sign", "-binary", "-in", "data", "-signer", "osslA.pem", "-inkey", "osslA.key", "-md", "sha256", "-outform", "DER", "-nodetach", "-keyid"},
			alg: "sha256WithRSA", leaf: osslA},
		{name: "smime PKCS7 DER attached", args: []string{"smime", "-sign", "-binary", "-in", "data", "-signer", "leaf.pem", "-inkey", "leaf.key", "-md", "sha256", "-outform", "DER", "-nodetach"},
			alg: "sha256WithRSA"},
		{name: "smime PKCS7 PEM detached", args: []string{"smime", "-sign", "-binary", "-in", "data", "-signer", "leaf.pem", "-inkey", "leaf.key", "-md", "sha256", "-outform", "PEM"},
			detached: content, alg: "sha256WithRSA"},
		{name: "smime PKCS7 noattr", args: []string{"smime", "-sign", "-binary", "-in", "data", "-signer", "leaf.pem", "-inkey", "leaf.key", "-md", "sha256", "-outform", "DER", "-nodetach", "-noattr"},
			alg: "sha256WithRSA"},
		{name: "smime default is SHA-256", args: []string{"smime", "-sign", "-binary", "-in", "data", "-signer", "leaf.pem", "-inkey", "leaf.key", "-outform", "DER", "-nodetach"},
			alg: "sha256WithRSA"},

		{name: "S/MIME output", args: sign("-md", "sha256", "-nodetach"), want: pkibridge.ReasonMalformed},
		{name: "two signers", args: sign("-md", "sha256", "-outform", "DER", "-nodetach", "-signer", "other.pem", "-inkey", "other.key"), want: pkibridge.ReasonMalformed},
		{name: "nocerts", args: sign("-md", "sha256", "-outform", "DER", "-nodetach", "-nocerts"), want: pkibridge.ReasonMalformed},
		{name: "nocerts with CA only", args: sign("-md", "sha256", "-outform", "DER", "-nodetach", "-nocerts", "-certfile", "ca.pem"), want: pkibridge.ReasonMalformed},
		{name: "detached, no content given", args: sign("-md", "sha256", "-outform", "DER"), want: pkibridge.ReasonMalformed},
		{name: "detached, other content", args: sign("-md", "sha256", "-outform", "DER"), detached: []byte("watashi transaction t-10"), want: pkibridge.ReasonBadSignature},
		{name: "noattr detached, other content", args: sign("-md", "sha256", "-outform", "DER", "-noattr"), detached: []byte("x"), want: pkibridge.ReasonBadSignature},
		{name: "attached differs from detached", args: sign("-md", "sha256", "-outform", "DER", "-nodetach"), detached: []byte("x"), want: pkibridge.ReasonBadSignature},
		{name: "rsa-1024 signer", args: []string{"cms", "-sign", "-binary", "-in", "data", "-signer", "weak.pem", "-inkey", "weak.key", "-md", "sha256", "-outform", "DER", "-nodetach"},
			want: pkibridge.ReasonWeakKey},
		// osslB's key signs, but the SignedData carries osslA: same issuer
		// and serial, another key. The identifier finds osslA, whose key
		// does not verify.
		{name: "signed by another key than the certificate's", args: []string{"cms", "-sign", "-binary", "-in", "data", "-signer", "osslB.pem", "-inkey", "osslB.key",
			"-md", "sha256", "-outform", "DER", "-nodetach", "-nocerts", "-certfile", "osslA.pem"}, want: pkibridge.ReasonBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := envOpenSSL(t, dir, tc.args...)
			p := pkibridge.DefaultPolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			env, err := pkibridge.ParseCMS(out, tc.detached, p)
			envWant(t, err, tc.want)
			if tc.want != "" {
				return
			}
			wantLeaf := tc.leaf
			if wantLeaf == nil {
				wantLeaf = f.leaf.Cert
			}
			wantHash := tc.hash
			if wantHash == 0 {
				wantHash = crypto.SHA256
			}
			if env.Format != "cms" || env.Algorithm != tc.alg || env.Hash != wantHash || !bytes.Equal(env.Content, content) ||
				len(env.Extra) != tc.extra || !env.Leaf.Equal(wantLeaf) {
				t.Fatalf("envelope: format %s alg %s hash %v extra %d content %q", env.Format, env.Algorithm, env.Hash, len(env.Extra), env.Content)
			}
		})
	}
}

func envReadCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestParseCMSMutations damages valid SignedData from both
// jpkisim.SignCMS and openssl in the ways transport and attackers do.
func TestParseCMSMutations(t *testing.T) {
	envNeedOpenSSL(t)
	f := envFixtures(t)
	dir := t.TempDir()
	envOpenSSLFiles(t, dir)
	content := []byte("watashi mutation content 0123456789")
	envWriteFile(t, dir, "data", content)
	ours, err := jpkisim.SignCMS(f.leaf.Key, f.leaf.Cert, content, false)
	if err != nil {
		t.Fatal(err)
	}
	noattr := envOpenSSL(t, dir, "cms", "-sign", "-binary", "-in", "data", "-signer", "leaf.pem", "-inkey", "leaf.key",
		"-md", "sha256", "-outform", "DER", "-nodetach", "-noattr")
	stream := envOpenSSL(t, dir, "cms", "-sign", "-binary", "-in", "data", "-signer", "leaf.pem", "-inkey", "leaf.key",
		"-md", "sha256", "-outform", "DER", "-nodetach", "-stream")
	pemOut := envOpenSSL(t, dir, "cms", "-sign", "-binary", "-in", "data", "-signer", "leaf.pem", "-inkey", "leaf.key",
		"-md", "sha256", "-outform", "PEM", "-nodetach")

	for name, valid := range map[string][]byte{"SignCMS": ours, "openssl noattr": noattr, "openssl stream": stream} {
		t.Run(name, func(t *testing.T) {
			if _, err := pkibridge.ParseCMS(valid, nil, pkibridge.DefaultPolicy()); err != nil {
				t.Fatalf("valid input refused: %v", err)
			}
			at := bytes.Index(valid, content)
			if at < 0 {
				t.Fatal("content not found in the encoding")
			}
			cases := []struct {
				name string
				in   []byte
				want pkibridge.Reason
			}{
				{"tampered content", envFlip(valid, at+3), pkibridge.ReasonBadSignature},
				{"truncated by one", valid[:len(valid)-1], pkibridge.ReasonMalformed},
				{"truncated to half", valid[:len(valid)/2], pkibridge.ReasonMalformed},
				{"header only", valid[:4], pkibridge.ReasonMalformed},
				{"trailing zero", append(append([]byte{}, valid...), 0), pkibridge.ReasonMalformed},
				{"trailing newline", append(append([]byte{}, valid...), '\n'), pkibridge.ReasonMalformed},
				{"trailing copy", append(append([]byte{}, valid...), valid...), pkibridge.ReasonMalformed},
				{"leading junk", append([]byte("junk"), valid...), pkibridge.ReasonMalformed},
			}
			if name != "openssl stream" {
				cases = append(cases, struct {
					name string
					in   []byte
					want pkibridge.Reason
				}{"flipped signature", envFlip(valid, len(valid)-5), pkibridge.ReasonBadSignature})
			}
			for _, tc := range cases {
				_, err := pkibridge.ParseCMS(tc.in, nil, pkibridge.DefaultPolicy())
				t.Run(tc.name, func(t *testing.T) { envWant(t, err, tc.want) })
			}
		})
	}

	pemCase := func(s string) []byte { return []byte(s) }
	block, _ := pem.Decode(pemOut)
	for _, tc := range []struct {
		name string
		in   []byte
		want pkibridge.Reason
	}{
		{"PEM valid", pemOut, ""},
		{"PEM with CRLF and spaces", append([]byte("  \r\n"), bytes.ReplaceAll(pemOut, []byte("\n"), []byte("\r\n"))...), ""},
		{"PEM PKCS7 label", pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: block.Bytes}), ""},
		{"PEM CERTIFICATE label", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}), pkibridge.ReasonMalformed},
		{"PEM with headers", pem.EncodeToMemory(&pem.Block{Type: "CMS", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: block.Bytes}), pkibridge.ReasonMalformed},
		{"PEM then junk", append(append([]byte{}, pemOut...), "junk"...), pkibridge.ReasonMalformed},
		{"PEM twice", append(append([]byte{}, pemOut...), pemOut...), pkibridge.ReasonMalformed},
		{"junk then PEM", append([]byte("junk\n"), pemOut...), pkibridge.ReasonMalformed},
		{"PEM broken base64", pemCase("-----BEGIN CMS-----\n!!!!\n-----END CMS-----\n"), pkibridge.ReasonMalformed},
		{"PEM of a certificate", pem.EncodeToMemory(&pem.Block{Type: "CMS", Bytes: f.leaf.Cert.Raw}), pkibridge.ReasonMalformed},
		{"empty", nil, pkibridge.ReasonMalformed},
		{"one byte", []byte{0x30}, pkibridge.ReasonMalformed},
		{"certificate DER", f.leaf.Cert.Raw, pkibridge.ReasonMalformed},
		{"oversized", append(bytes.Repeat([]byte{0}, pkibridge.DefaultPolicy().MaxEnvelopeBytes), ours...), pkibridge.ReasonMalformed},
		{"BER nesting bomb", append(bytes.Repeat([]byte{0x30, 0x80}, 5000), bytes.Repeat([]byte{0, 0}, 5000)...), pkibridge.ReasonMalformed},
		{"BER indefinite primitive", []byte{0x04, 0x80, 0x01, 0x00, 0x00}, pkibridge.ReasonMalformed},
		{"BER constructed UTF8String", []byte{0x2c, 0x80, 0x0c, 0x01, 0x41, 0x00, 0x00}, pkibridge.ReasonMalformed},
		{"BER missing end-of-contents", []byte{0x30, 0x80, 0x02, 0x01, 0x01}, pkibridge.ReasonMalformed},
		{"BER octet string with a non-octet segment", []byte{0x24, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00}, pkibridge.ReasonMalformed},
		{"huge length", []byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00}, pkibridge.ReasonMalformed},
		{"high tag number", []byte{0x3f, 0x81, 0x01, 0x00}, pkibridge.ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pkibridge.ParseCMS(tc.in, nil, pkibridge.DefaultPolicy())
			envWant(t, err, tc.want)
		})
	}
	_, err = pkibridge.ParseCMS(ours, bytes.Repeat([]byte("x"), pkibridge.DefaultPolicy().MaxEnvelopeBytes+1), pkibridge.DefaultPolicy())
	envWant(t, err, pkibridge.ReasonMalformed)
	if !strings.Contains(err.Error(), "too large") {
		t.Fatalf("oversized detached content: %v", err)
	}
}

func TestVerifyCMS(t *testing.T) {
	f := envFixtures(t)
	v := envVerifier(t, f)
	challenge := []byte("watashi challenge cms")
	attached, err := jpkisim.SignCMS(f.leaf.Key, f.leaf.Cert, challenge, false)
	if err != nil {
		t.Fatal(err)
	}
	detached, err := jpkisim.SignCMS(f.leaf.Key, f.leaf.Cert, challenge, true)
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.VerifyCMS(context.Background(), attached, nil, challenge)
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != "cms" || res.Algorithm != "sha256WithRSA" || res.Kind != pkibridge.KindSignature || res.Attributes == nil {
		t.Fatalf("result %+v", res)
	}
	if _, err := v.VerifyCMS(context.Background(), detached, challenge, challenge); err != nil {
		t.Fatalf("detached: %v", err)
	}
	_, err = v.VerifyCMS(context.Background(), attached, nil, []byte("watashi challenge other"))
	envWant(t, err, pkibridge.ReasonBadSignature)
	// The detached bytes verify, but they are not what was issued.
	other := []byte("watashi challenge other")
	otherSig, err := jpkisim.SignCMS(f.leaf.Key, f.leaf.Cert, other, true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.VerifyCMS(context.Background(), otherSig, other, challenge)
	envWant(t, err, pkibridge.ReasonBadSignature)
	_, err = v.VerifyCMS(context.Background(), detached, nil, challenge)
	envWant(t, err, pkibridge.ReasonMalformed)
}

// DER input is parsed in place; the envelope must still not share memory
// with the caller's buffer, which may be reused for the next request.
func TestParseCMSEnvelopeIndependentOfInput(t *testing.T) {
	f := envFixtures(t)
	content := []byte("independent")
	der, err := jpkisim.SignCMS(f.leaf.Key, f.leaf.Cert, content, false)
	if err != nil {
		t.Fatal(err)
	}
	env, err := pkibridge.ParseCMS(der, nil, pkibridge.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	for i := range der {
		der[i] = 0
	}
	if !bytes.Equal(env.Leaf.Raw, f.leaf.Cert.Raw) || !bytes.Equal(env.Content, content) {
		t.Fatal("envelope changed with the caller's buffer")
	}
}
