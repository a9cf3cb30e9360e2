package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/watashi-id/watashi/idp/internal/ids"
)

// A session cookie made for a client's sign-in carries a hint after its
// random part: "<random>.<hint>", the hint being the account and the
// client sealed (AES-256-GCM) under a key derived from the cookie key.
// The consent step that follows such a sign-in reads the remembered
// grant and the account in the same round trip as the session, which it
// could not otherwise name before the session was read.
//
// The hint is a guess to read with, never a fact: the record is keyed by
// the hash of the whole value, so a changed hint finds no session, and
// a caller uses what it read only when the session read with it names
// the same account. Sealing keeps the account ID, which links a
// resident, out of anything that sees the cookie without the key. The
// nonce is derived from the random part, which no two cookies share, so
// the cookie carries only the tag.

// hintMaxClient bounds the client IDs a hint carries: with an account ID
// (22 characters) the cookie then stays within cookieMax. A longer one
// gets a cookie without a hint.
const hintMaxClient = 100

func newHintAEAD(key []byte) cipher.AEAD {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("watashi session hint\x00"))
	block, err := aes.NewCipher(h.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

func hintNonce(random string, size int) []byte {
	n := sha256.Sum256([]byte("watashi session hint nonce\x00" + random))
	return n[:size]
}

// newCookie makes a session cookie value for a sign-in of accountID at
// clientID's request, with the hint when there is a client and it fits.
func (m *Manager) newCookie(accountID, clientID string) string {
	v := ids.Long()
	if clientID == "" || len(clientID) > hintMaxClient || strings.ContainsRune(accountID, 0) || strings.ContainsRune(clientID, 0) {
		return v
	}
	ct := m.hint.Seal(nil, hintNonce(v, m.hint.NonceSize()), []byte(accountID+"\x00"+clientID), []byte(v))
	c := v + "." + base64.RawURLEncoding.EncodeToString(ct)
	if len(c) > cookieMax {
		return v
	}
	return c
}

// Hint is what the browser's session cookie says, before any read, of
// the sign-in that made it: the account and the client it was made for.
// It is false when the cookie says nothing (no cookie, no hint, a hint
// that does not open). Use what is read with it only once the session
// read alongside names the same account.
func (m *Manager) Hint(r *http.Request) (accountID, clientID string, ok bool) {
	c, err := r.Cookie(m.name)
	if err != nil || len(c.Value) > cookieMax {
		return "", "", false
	}
	v, h, found := strings.Cut(c.Value, ".")
	if !found {
		return "", "", false
	}
	ct, err := base64.RawURLEncoding.Strict().DecodeString(h)
	if err != nil {
		return "", "", false
	}
	pt, err := m.hint.Open(nil, hintNonce(v, m.hint.NonceSize()), ct, []byte(v))
	if err != nil {
		return "", "", false
	}
	accountID, clientID, found = strings.Cut(string(pt), "\x00")
	if !found || accountID == "" || clientID == "" {
		return "", "", false
	}
	return accountID, clientID, true
}
