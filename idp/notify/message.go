package notify

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime"
	"strings"
	"time"
)

// Mail is one message as Watashi writes it: text only, both languages in
// one body (Japanese first), so that it reads whatever the resident's
// mail program shows.
type Mail struct {
	From, To string
	// Subject is written as an RFC 2047 encoded word.
	Subject string
	Body    string
	Date    time.Time
	// Host names the Message-ID's right-hand side.
	Host string
}

// Bytes renders the message: CRLF lines, MIME 1.0, text/plain in UTF-8
// with base64 transfer encoding (so no line of the body can be taken for
// a header, a boundary or the end of DATA), and every header value either
// ASCII checked here or an encoded word.
func (m *Mail) Bytes() ([]byte, error) {
	if _, err := ParseAddress(m.To); err != nil {
		return nil, err
	}
	if _, err := ParseAddress(m.From); err != nil {
		return nil, fmt.Errorf("notify: from address: %w", err)
	}
	if strings.ContainsAny(m.Host, "\r\n<>@ ") || m.Host == "" {
		return nil, fmt.Errorf("notify: host %q is not usable in a Message-ID", m.Host)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", m.From)
	h("To", m.To)
	h("Subject", mime.BEncoding.Encode("UTF-8", m.Subject))
	h("Date", m.Date.Format(time.RFC1123Z))
	h("Message-ID", "<"+hex.EncodeToString(id)+"@"+m.Host+">")
	h("MIME-Version", "1.0")
	h("Content-Type", `text/plain; charset="UTF-8"`)
	h("Content-Transfer-Encoding", "base64")
	h("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	body := strings.ReplaceAll(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\n", "\r\n")
	enc := base64.StdEncoding.EncodeToString([]byte(body))
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes(), nil
}
