package walletsim

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

//go:embed phone.html
var phoneHTML string

var phoneTmpl = template.Must(template.New("phone").Parse(phoneHTML))

// Bounds of the demo's in-memory phones: the demo is public on whatever
// address it listens on, so a visitor must not be able to grow it without
// limit.
const (
	maxPhones       = 1000
	maxPendingPerUA = 8
	phoneCookie     = "watashi-phone"
	phoneTimeout    = 30 * time.Second
)

// PhoneHandler is the demo's phone simulator: a small page where a demo
// user types the basic four facts to enroll (keys and certificates are
// made by sigCA and authCA and held in this process, marked SIMULATOR),
// opens a transaction URL (the login page's app link points here with
// ?tx= prefilled), sees what is asked and approves or declines. httpClient
// reaches the provider. Mount it under a path ending in "/" (the demo
// uses /phone/); it routes on the last path segment, with or without
// http.StripPrefix.
//
// It fetches only transaction URLs on the host the page itself was
// requested on, so the demo cannot be used to make requests elsewhere.
func PhoneHandler(sigCA, authCA *jpkisim.CA, httpClient *http.Client) http.Handler {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if httpClient == nil {
		httpClient = defaultClient
	}
	return &phone{sigCA: sigCA, authCA: authCA, hc: httpClient, key: key, phones: map[string]*phoneState{}}
}

type phone struct {
	sigCA, authCA *jpkisim.CA
	hc            *http.Client
	key           []byte

	mu     sync.Mutex
	phones map[string]*phoneState
	order  []string // oldest first, for eviction
}

type phoneState struct {
	wallet  *Wallet
	label   string // what the demo user typed as the name, shown back to them
	pending map[string]*Transaction
}

type phoneView struct {
	CSRF      string
	Enrolled  bool
	Label     string
	TxURL     string
	Tx        *Transaction
	Expires   string
	Error     string
	Done      string // "approved", "denied", "reset"
	Form      enrollForm
	Formats   []string
	Simulator bool
}

type enrollForm struct {
	Family, Given, Birthdate, Gender, Address string
}

func (p *phone) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	switch path.Base(r.URL.Path) {
	case "enroll":
		p.post(w, r, p.enroll)
	case "approve":
		p.post(w, r, p.approve)
	case "deny":
		p.post(w, r, p.deny)
	case "reset":
		p.post(w, r, p.reset)
	default:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p.index(w, r)
	}
}

// phoneID returns the visitor's phone ID, creating the cookie if needed.
func (p *phone) phoneID(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(phoneCookie); err == nil && len(c.Value) == 22 {
		return c.Value
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: phoneCookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	return id
}

func (p *phone) csrf(id string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("phone-csrf\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (p *phone) state(id string) *phoneState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.phones[id]
}

func (p *phone) render(w http.ResponseWriter, status int, v phoneView) {
	v.Simulator = true
	v.Formats = []string{FormatJWS, FormatCMS, FormatRaw}
	var b strings.Builder
	if err := phoneTmpl.Execute(&b, v); err != nil {
		http.Error(w, "template error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func (p *phone) index(w http.ResponseWriter, r *http.Request) {
	id := p.phoneID(w, r)
	v := phoneView{CSRF: p.csrf(id), TxURL: r.URL.Query().Get("tx")}
	st := p.state(id)
	if st == nil {
		p.render(w, http.StatusOK, v)
		return
	}
	v.Enrolled, v.Label = true, st.label
	if v.TxURL == "" {
		p.render(w, http.StatusOK, v)
		return
	}
	u, err := ParseURL(v.TxURL)
	if err != nil || u.Host != r.Host {
		v.Error = "Not a transaction URL of this demo. / このデモのトランザクション URL ではありません。"
		p.render(w, http.StatusBadRequest, v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), phoneTimeout)
	defer cancel()
	tx, err := Fetch(ctx, p.hc, u.String())
	if err != nil {
		v.Error = err.Error()
		p.render(w, http.StatusBadGateway, v)
		return
	}
	p.mu.Lock()
	if len(st.pending) >= maxPendingPerUA {
		st.pending = map[string]*Transaction{}
	}
	st.pending[tx.ID] = tx
	p.mu.Unlock()
	v.Tx = tx
	v.Expires = tx.Expires().In(time.FixedZone("JST", 9*3600)).Format("15:04:05 JST")
	p.render(w, http.StatusOK, v)
}

// post checks the method and the CSRF token, then runs fn.
func (p *phone) post(w http.ResponseWriter, r *http.Request, fn func(http.ResponseWriter, *http.Request, string)) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	c, err := r.Cookie(phoneCookie)
	if err != nil || !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(p.csrf(c.Value))) {
		http.Error(w, "invalid form token; reload the page", http.StatusForbidden)
		return
	}
	fn(w, r, c.Value)
}

func (p *phone) enroll(w http.ResponseWriter, r *http.Request, id string) {
	f := enrollForm{
		Family:    strings.TrimSpace(r.PostFormValue("family")),
		Given:     strings.TrimSpace(r.PostFormValue("given")),
		Birthdate: strings.TrimSpace(r.PostFormValue("birthdate")),
		Gender:    r.PostFormValue("gender"),
		Address:   strings.TrimSpace(r.PostFormValue("address")),
	}
	tx := r.PostFormValue("tx")
	facts, err := FactsFromInput(f.Family+"\u3000"+f.Given, f.Birthdate, f.Gender, f.Address)
	if err != nil || f.Family == "" || f.Given == "" {
		msg := "Fill in every field. / すべての項目を入力してください。"
		if err != nil {
			msg = err.Error()
		}
		p.render(w, http.StatusBadRequest, phoneView{CSRF: p.csrf(id), TxURL: tx, Error: msg, Form: f})
		return
	}
	wal, err := Enroll(p.sigCA, p.authCA, facts)
	if err != nil {
		p.render(w, http.StatusInternalServerError, phoneView{CSRF: p.csrf(id), TxURL: tx, Error: "enrollment failed", Form: f})
		return
	}
	p.mu.Lock()
	if _, ok := p.phones[id]; !ok {
		p.order = append(p.order, id)
	}
	p.phones[id] = &phoneState{wallet: wal, label: f.Family + " " + f.Given, pending: map[string]*Transaction{}}
	for len(p.order) > maxPhones {
		delete(p.phones, p.order[0])
		p.order = p.order[1:]
	}
	p.mu.Unlock()
	http.Redirect(w, r, "./?"+url.Values{"tx": {tx}}.Encode(), http.StatusSeeOther)
}

func (p *phone) takePending(id, txID string) (*phoneState, *Transaction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.phones[id]
	if st == nil {
		return nil, nil
	}
	tx := st.pending[txID]
	delete(st.pending, txID)
	return st, tx
}

func (p *phone) approve(w http.ResponseWriter, r *http.Request, id string) {
	st, tx := p.takePending(id, r.PostFormValue("txid"))
	if st == nil || tx == nil {
		p.render(w, http.StatusBadRequest, phoneView{CSRF: p.csrf(id), Enrolled: st != nil, Error: "Open the transaction again. / もう一度トランザクションを開いてください。"})
		return
	}
	format := r.PostFormValue("format")
	if format != FormatJWS && format != FormatCMS && format != FormatRaw {
		format = FormatJWS
	}
	ctx, cancel := context.WithTimeout(r.Context(), phoneTimeout)
	defer cancel()
	v := phoneView{CSRF: p.csrf(id), Enrolled: true, Label: st.label}
	if err := st.wallet.Submit(ctx, p.hc, tx, format); err != nil {
		v.Error = err.Error()
		p.render(w, http.StatusBadRequest, v)
		return
	}
	v.Done = "approved"
	p.render(w, http.StatusOK, v)
}

func (p *phone) deny(w http.ResponseWriter, r *http.Request, id string) {
	st, _ := p.takePending(id, r.PostFormValue("txid"))
	v := phoneView{CSRF: p.csrf(id), Enrolled: st != nil, Done: "denied"}
	if st != nil {
		v.Label = st.label
	}
	p.render(w, http.StatusOK, v)
}

func (p *phone) reset(w http.ResponseWriter, r *http.Request, id string) {
	p.mu.Lock()
	delete(p.phones, id)
	p.mu.Unlock()
	p.render(w, http.StatusOK, phoneView{CSRF: p.csrf(id), Done: "reset"})
}

// FactsFromInput turns what a person types (name with a space between
// family and given name, YYYY-MM-DD, male|female|not_known, address) into
// certificate facts, checking each the way the certificate profile needs.
func FactsFromInput(name, birthdate, gender, address string) (jpkisim.Facts, error) {
	name = strings.TrimSpace(name)
	if i := strings.IndexAny(name, " \u3000"); i > 0 {
		_, size := utf8.DecodeRuneInString(name[i:])
		name = strings.TrimSpace(name[:i]) + "\u3000" + strings.TrimSpace(name[i+size:])
	}
	if name == "" || !strings.Contains(name, "\u3000") || strings.HasSuffix(name, "\u3000") || utf8.RuneCountInString(name) > 100 {
		return jpkisim.Facts{}, errInput("name: family and given name separated by a space / 氏名：姓と名の間に空白を入れてください")
	}
	d, err := time.Parse("2006-01-02", birthdate)
	if err != nil || d.Year() < 1868 || d.After(time.Now()) {
		return jpkisim.Facts{}, errInput("birth date: YYYY-MM-DD / 生年月日：YYYY-MM-DD")
	}
	codes := map[string]string{"male": "1", "female": "2", "not_known": "3"}
	g, ok := codes[gender]
	if !ok {
		return jpkisim.Facts{}, errInput("gender: male, female or not_known / 性別を選んでください")
	}
	address = strings.TrimSpace(address)
	if address == "" || utf8.RuneCountInString(address) > 200 {
		return jpkisim.Facts{}, errInput("address: 1 to 200 characters / 住所：1～200文字")
	}
	return jpkisim.Facts{
		Name:                name,
		NameSubstitution:    strings.Repeat("0", utf8.RuneCountInString(name)),
		Gender:              g,
		Birthdate:           jpkisim.EraDate(d),
		Address:             address,
		AddressSubstitution: strings.Repeat("0", utf8.RuneCountInString(address)),
	}, nil
}

type errInput string

func (e errInput) Error() string { return string(e) }
