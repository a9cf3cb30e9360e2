package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/watashi-id/watashi/idp/web"
)

// demoMailbox stands in for a mail relay in the demo: the notification
// mails are kept in memory (the last demoMailKeep) and shown at /mail/,
// so that the whole opt-in and the "this wasn't me" link can be tried
// without sending anything anywhere.
type demoMailbox struct {
	mu    sync.Mutex
	mails []demoMail
}

type demoMail struct {
	To, Subject string
	At          time.Time
	Lines       []demoLine
}

// demoLine is a line of a mail's text, or a link.
type demoLine struct{ Text, Link string }

const demoMailKeep = 50

var demoLink = regexp.MustCompile(`^https?://\S+$`)

func (m *demoMailbox) From() string { return "no-reply@watashi.example" }

// Send reads the message back as a mail program would.
func (m *demoMailbox) Send(_ context.Context, to string, msg []byte) error {
	parsed, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return err
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(parsed.Header.Get("Subject"))
	raw, _ := io.ReadAll(parsed.Body)
	body, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw), "\r\n", ""))
	if err != nil {
		return err
	}
	dm := demoMail{To: to, Subject: subject, At: time.Now().In(web.JST)}
	for _, l := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n") {
		if demoLink.MatchString(l) {
			dm.Lines = append(dm.Lines, demoLine{Link: l})
		} else {
			dm.Lines = append(dm.Lines, demoLine{Text: l})
		}
	}
	m.mu.Lock()
	m.mails = append([]demoMail{dm}, m.mails...)
	if len(m.mails) > demoMailKeep {
		m.mails = m.mails[:demoMailKeep]
	}
	m.mu.Unlock()
	return nil
}

var demoMailPage = template.Must(template.New("mail").Parse(`<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>メール / Mail - Watashi demo</title><link rel="stylesheet" href="/static/watashi.css"></head>
<body><main id="main"><div class="card" id="mailbox">
<h1>デモのメール <span lang="en">/ The demo's mail</span></h1>
<p class="small">デモはメールを送らず、ここに表示します。<span lang="en">The demo sends no mail: it shows it here.</span></p>
{{range $i, $m := .}}<article class="mail" id="mail-{{$i}}">
<h2>{{$m.Subject}}</h2><p class="small">To: {{$m.To}} · {{$m.At.Format "2006-01-02 15:04:05 MST"}}</p>
<pre style="white-space: pre-wrap">{{range $m.Lines}}{{if .Link}}<a href="{{.Link}}">{{.Link}}</a>{{else}}{{.Text}}{{end}}
{{end}}</pre></article>
{{else}}<p id="mail-none">まだメールはありません。<span lang="en">No mail yet.</span></p>{{end}}
</div></main></body></html>
`))

func (m *demoMailbox) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	mails := append([]demoMail(nil), m.mails...)
	m.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = demoMailPage.Execute(w, mails)
}
