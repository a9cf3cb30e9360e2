package notify

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"time"
)

var fixedTime = time.Date(2026, 12, 5, 3, 4, 5, 0, time.UTC)

func TestParseAddress(t *testing.T) {
	for _, ok := range []string{"taro@example.jp", "taro.yamada+watashi@mail.example.co.jp", "a@b.jp"} {
		if got, err := ParseAddress(ok); err != nil || got != ok {
			t.Errorf("ParseAddress(%q) = %q, %v", ok, got, err)
		}
	}
	for _, bad := range []string{
		"", "taro", "taro@", "@example.jp", "taro@localhost", "taro@example.jp.", "taro@[127.0.0.1]",
		"taro@example.jp\r\nBcc: victim@example.com", "taro@example.jp\nBcc: x@y.jp", "taro@exa\rmple.jp",
		"Taro <taro@example.jp>", "taro@example.jp, jiro@example.jp", "taro@example.jp (me)", `"taro"@example.jp`,
		"taro @example.jp", "taro@example.jp\x00", "太郎@example.jp\xff", strings.Repeat("a", 250) + "@b.jp",
		"a@b@c.jp", "taro@example.jp>\r\nRCPT TO:<x@y.jp",
	} {
		if _, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) accepted", bad)
		}
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"taro@example.jp", "a\r\nb@c.jp", "Taro <t@e.jp>", "t@e.jp, u@e.jp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		if a != s || strings.ContainsAny(a, "\r\n\x00<>, \t") || len(a) > MaxAddressLen {
			t.Fatalf("accepted %q", s)
		}
		m := &Mail{From: "no-reply@id.example.jp", To: a, Subject: "s", Body: "b", Date: fixedTime, Host: "h"}
		b, err := m.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(b))
		if err != nil || msg.Header.Get("To") != a || len(msg.Header) != 9 {
			t.Fatalf("the address changed the headers: %v %v", err, msg.Header)
		}
	})
}

// The message reads back as it was meant, whatever the subject and body
// hold: encoded-word subject, base64 UTF-8 body, no extra header.
func TestMailBytes(t *testing.T) {
	m := &Mail{From: "no-reply@id.example.jp", To: "taro@example.jp", Subject: "お知らせ\r\nBcc: x@y.jp",
		Body: "一行目\n.\nFrom: evil\r\n\r\n二行目 " + strings.Repeat("長い", 100), Date: fixedTime, Host: "id.example.jp"}
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Header) != 9 || msg.Header.Get("Bcc") != "" {
		t.Fatalf("headers %v", msg.Header)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subj != m.Subject {
		t.Fatalf("subject %q %v", subj, err)
	}
	if msg.Header.Get("Content-Type") != `text/plain; charset="UTF-8"` || msg.Header.Get("Content-Transfer-Encoding") != "base64" ||
		msg.Header.Get("MIME-Version") != "1.0" || !strings.HasSuffix(msg.Header.Get("Message-ID"), "@id.example.jp>") {
		t.Fatalf("MIME headers %v", msg.Header)
	}
	for _, line := range strings.Split(string(b), "\r\n") {
		if len(line) > 78 {
			t.Fatalf("line of %d octets", len(line))
		}
	}
	raw, _ := io.ReadAll(msg.Body)
	body, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw), "\r\n", ""))
	if err != nil || string(body) != strings.ReplaceAll(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\n", "\r\n") {
		t.Fatalf("body %q %v", body, err)
	}
	for _, bad := range []*Mail{
		{From: m.From, To: "taro@example.jp\r\nBcc: x@y.jp", Subject: "s", Body: "b", Date: fixedTime, Host: "h"},
		{From: "a@b.jp\nX: y", To: m.To, Subject: "s", Body: "b", Date: fixedTime, Host: "h"},
		{From: m.From, To: m.To, Subject: "s", Body: "b", Date: fixedTime, Host: "h>\r\nX: y"},
	} {
		if _, err := bad.Bytes(); err == nil {
			t.Errorf("rendered %+v", bad)
		}
	}
}

type mimeWordDecoder = mime.WordDecoder
