package passkey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
)

// softKey is a WebAuthn authenticator in software, for the tests that a
// browser's virtual authenticator cannot drive: a counter that goes back,
// flags that change, another origin, a replayed assertion. It makes
// "none" attestations and ES256 assertions exactly as CTAP2 lays them out.
type softKey struct {
	key     *ecdsa.PrivateKey
	credID  []byte
	handle  []byte // learnt at registration
	counter uint32
	be, bs  bool
	noUV    bool
	aaguid  []byte
	rpID    string
	origin  string
}

func newSoftKey(t *testing.T, rpID, origin string) *softKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	return &softKey{key: k, credID: id, aaguid: make([]byte, 16), rpID: rpID, origin: origin}
}

var b64 = base64.RawURLEncoding

func (s *softKey) flags(at bool) byte {
	f := byte(0x01) // UP
	if !s.noUV {
		f |= 0x04
	}
	if s.be {
		f |= 0x08
	}
	if s.bs {
		f |= 0x10
	}
	if at {
		f |= 0x40
	}
	return f
}

func (s *softKey) authData(at bool) []byte {
	h := sha256.Sum256([]byte(s.rpID))
	out := append([]byte{}, h[:]...)
	out = append(out, s.flags(at))
	out = binary.BigEndian.AppendUint32(out, s.counter)
	if at {
		out = append(out, s.aaguid...)
		out = binary.BigEndian.AppendUint16(out, uint16(len(s.credID)))
		out = append(out, s.credID...)
		x, y := make([]byte, 32), make([]byte, 32)
		s.key.X.FillBytes(x)
		s.key.Y.FillBytes(y)
		cose, err := webauthncbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
		if err != nil {
			panic(err)
		}
		out = append(out, cose...)
	}
	return out
}

func (s *softKey) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": s.origin, "crossOrigin": false})
	return b
}

// options is the part of a begin answer the authenticator reads.
type options struct {
	Ceremony  string `json:"ceremony"`
	PublicKey struct {
		Challenge string `json:"challenge"`
		User      struct {
			ID string `json:"id"`
		} `json:"user"`
		ExcludeCredentials []struct {
			ID string `json:"id"`
		} `json:"excludeCredentials"`
		AuthenticatorSelection struct {
			ResidentKey      string `json:"residentKey"`
			UserVerification string `json:"userVerification"`
		} `json:"authenticatorSelection"`
		UserVerification string `json:"userVerification"`
		RPID             string `json:"rpId"`
		RP               struct {
			ID string `json:"id"`
		} `json:"rp"`
	} `json:"publicKey"`
}

// create answers navigator.credentials.create.
func (s *softKey) create(t *testing.T, o options) json.RawMessage {
	t.Helper()
	h, err := b64.DecodeString(o.PublicKey.User.ID)
	if err != nil {
		t.Fatalf("user handle %q: %v", o.PublicKey.User.ID, err)
	}
	s.handle = h
	att, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": s.authData(true)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(s.credID), "rawId": b64.EncodeToString(s.credID), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(s.clientData("webauthn.create", o.PublicKey.Challenge)),
			"attestationObject": b64.EncodeToString(att),
			"transports":        []string{"internal"},
		},
		"clientExtensionResults": map[string]any{},
	})
	return b
}

// get answers navigator.credentials.get, counting up first.
func (s *softKey) get(t *testing.T, o options) json.RawMessage {
	t.Helper()
	s.counter++
	return s.sign(t, o.PublicKey.Challenge)
}

// sign makes an assertion over challenge with the current counter.
func (s *softKey) sign(t *testing.T, challenge string) json.RawMessage {
	t.Helper()
	ad := s.authData(false)
	cd := s.clientData("webauthn.get", challenge)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(s.credID), "rawId": b64.EncodeToString(s.credID), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(cd),
			"authenticatorData": b64.EncodeToString(ad),
			"signature":         b64.EncodeToString(sig),
			"userHandle":        b64.EncodeToString(s.handle),
		},
		"clientExtensionResults": map[string]any{},
	})
	return b
}
