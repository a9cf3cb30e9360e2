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
	maxAnswered     = 16
	phoneCookie     = "watashi-phone"
	phoneTimeout    = 30 * time.Second
)

// PhoneHandler is the demo's phone simulator: a small page where a demo
// user types the basic four facts to enroll (keys and certificates are
// made by sigCA and authCA and held in this process, marked SIMULATOR),
// opens a transaction URL (the login page's app link points here with
// ?tx= prefilled), sees what is asked and approves, declines, or reports
// that the confirmation codes differ; the provider hears all three.
// Opened through the login page's link (&link=1: the same device, as an
// app link would open a wallet), it then follows the transaction's return
// URL back to the browser; opened with a pasted URL (as if a QR code was
// scanned on another phone), it says where to look. httpClient reaches
// the provider. Mount it under a path ending in "/" (the demo
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
	// answered remembers the last transactions this phone answered, so
	// that a second press or a Back says so instead of failing.
	answered map[string]answer
	order    []string
}

// answer is how the phone answered a transaction.
type answer struct {
	done      string // "approved", "denied", "differ"
	returnURL string
}

func (st *phoneState) remember(txID string, a answer) {
	if st.answered == nil {
		st.answered = map[string]answer{}
	}
	if _, ok := st.answered[txID]; !ok {
		st.order = append(st.order, txID)
	}
	st.answered[txID] = a
	for len(st.order) > maxAnswered {
		delete(st.answered, st.order[0])
		st.order = st.order[1:]
	}
}

type phoneView struct {
	CSRF     string
	Enrolled bool
	Label    string
	TxURL    string
	// Link is set when the phone was opened through the login page's
	// link: the browser is on this device.
	Link    bool
	Tx      *Transaction
	Expires string
	// Error is what went wrong, in words for the resident; ErrorCode is
	// the provider's code, for developers.
	Error     string
	ErrorCode string
	Done      string // "approved", "denied", "differ", "reset", "already"
	ReturnURL string
	Form      enrollForm
	Formats   []string
	Simulator bool
}

// phoneErrors say in both languages what the provider's refusals mean to
// the resident holding the phone.
var phoneErrors = map[string]string{
	"expired_transaction": "This sign-in has expired. Start again in the browser. / このサインインは有効期限が切れました。ブラウザーでもう一度始めてください。",
	"already_used":        "This sign-in has already been answered. Look at the browser. / このサインインにはすでに回答済みです。ブラウザーをご覧ください。",
	"expired_qr_token":    "The QR code has changed since it was scanned. Scan the current one. / QR コードが更新されました。表示中の QR コードを読み取ってください。",
	"invalid_qr_token":    "This link is not valid. Scan the QR code again. / このリンクは使えません。QR コードを読み取り直してください。",
	"unknown_transaction": "This sign-in was not found. Start again in the browser. / このサインインは見つかりません。ブラウザーでもう一度始めてください。",
	"not_enrolled":        "This phone's certificate is not registered yet. In the browser, choose \"First time\". / この電子証明書はまだ登録されていません。ブラウザーで「はじめての方」を選んでください。",
	"identity_mismatch":   "The signature certificate names another person than the signed-in account. / 署名用電子証明書の氏名・生年月日がサインイン中のアカウントと一致しません。",
	"account_conflict":    "These certificates belong to another account. / この電子証明書は別のアカウントに登録されています。",
	"revoked":             "The certificate has been revoked. / 電子証明書が失効しています。",
	"expired":             "The certificate has expired. / 電子証明書の有効期限が切れています。",
	"rate_limited":        "Too many attempts. Wait a minute and try again. / 試行回数が多すぎます。1分ほど待ってからお試しください。",
	"revocation_unknown":  "The certificate could not be checked just now. Try again shortly. / 電子証明書の状態を確認できませんでした。少し待ってからお試しください。",
}

// phoneError turns a wallet error into the view's words: the resident's
// message and, apart, the provider's code.
func phoneError(v *phoneView, err error) {
	code := ErrorCode(err)
	if msg, ok := phoneErrors[code]; ok {
		v.Error, v.ErrorCode = msg, code
		return
	}
	if code != "" {
		v.Error, v.ErrorCode = "The provider did not accept this answer. / 提供者がこの回答を受け付けませんでした。", code
		return
	}
	v.Error = "The provider could not be reached, or answered something this wallet cannot use. / 提供者に接続できないか、使えない応答でした。"
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
		p.post(w, r, p.deny(DeclineDeclined))
	case "differ":
		p.post(w, r, p.deny(DeclineCodesDiffer))
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
	v := phoneView{CSRF: p.csrf(id), TxURL: r.URL.Query().Get("tx"), Link: r.URL.Query().Get("link") == "1"}
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
	// Back to a transaction this phone answered: say so, and offer the
	// way back to the browser again.
	p.mu.Lock()
	a, answered := st.answered[path.Base(u.Path)]
	p.mu.Unlock()
	if answered {
		v.Done, v.ReturnURL = "already", a.returnURL
		if !v.Link {
			v.ReturnURL = ""
		}
		p.render(w, http.StatusOK, v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), phoneTimeout)
	defer cancel()
	tx, err := Fetch(ctx, p.hc, u.String())
	if err != nil {
		phoneError(&v, err)
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
	link := r.PostFormValue("link") == "1"
	facts, err := FactsFromInput(f.Family+"\u3000"+f.Given, f.Birthdate, f.Gender, f.Address)
	if err != nil || f.Family == "" || f.Given == "" {
		msg := "Fill in every field. / すべての項目を入力してください。"
		if err != nil {
			msg = err.Error()
		}
		p.render(w, http.StatusBadRequest, phoneView{CSRF: p.csrf(id), TxURL: tx, Link: link, Error: msg, Form: f})
		return
	}
	wal, err := Enroll(p.sigCA, p.authCA, facts)
	if err != nil {
		p.render(w, http.StatusInternalServerError, phoneView{CSRF: p.csrf(id), TxURL: tx, Link: link, Error: "Enrollment failed. / 発行に失敗しました。", Form: f})
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
	q := url.Values{"tx": {tx}}
	if link {
		q.Set("link", "1")
	}
	http.Redirect(w, r, "./?"+q.Encode(), http.StatusSeeOther)
}

func (p *phone) takePending(id, txID string) (*phoneState, *Transaction, answer, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.phones[id]
	if st == nil {
		return nil, nil, answer{}, false
	}
	tx := st.pending[txID]
	delete(st.pending, txID)
	a, answered := st.answered[txID]
	return st, tx, a, answered
}

// answered ends a press of a button on the phone: on the browser's own
// device the phone goes back to it (the transaction's return URL); on
// another it says where to look.
func (p *phone) answered(w http.ResponseWriter, r *http.Request, v phoneView, returnURL string) {
	if v.Link && returnURL != "" {
		http.Redirect(w, r, returnURL, http.StatusSeeOther)
		return
	}
	p.render(w, http.StatusOK, v)
}

func (p *phone) approve(w http.ResponseWriter, r *http.Request, id string) {
	link := r.PostFormValue("link") == "1"
	st, tx, prev, answered := p.takePending(id, r.PostFormValue("txid"))
	if st == nil || tx == nil {
		v := phoneView{CSRF: p.csrf(id), Enrolled: st != nil, Link: link}
		if answered {
			// A second press: the first one already answered.
			v.Label, v.Done = st.label, "already"
			p.answered(w, r, v, prev.returnURL)
			return
		}
		v.Error = "This sign-in is no longer open on this phone. Scan the QR code or open the link again. / このサインインはこのシミュレーターで開かれていません。QR コードを読み取るか、リンクを開き直してください。"
		p.render(w, http.StatusBadRequest, v)
		return
	}
	format := r.PostFormValue("format")
	if format != FormatJWS && format != FormatCMS && format != FormatRaw {
		format = FormatJWS
	}
	ctx, cancel := context.WithTimeout(r.Context(), phoneTimeout)
	defer cancel()
	v := phoneView{CSRF: p.csrf(id), Enrolled: true, Label: st.label, Link: link}
	if err := st.wallet.Submit(ctx, p.hc, tx, format); err != nil {
		phoneError(&v, err)
		p.render(w, http.StatusBadRequest, v)
		return
	}
	p.mu.Lock()
	st.remember(tx.ID, answer{done: "approved", returnURL: tx.ReturnURL})
	p.mu.Unlock()
	v.Done = "approved"
	p.answered(w, r, v, tx.ReturnURL)
}

// deny tells the provider the resident will not sign: declined, or
// (reason DeclineCodesDiffer) the codes differ.
func (p *phone) deny(reason string) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		link := r.PostFormValue("link") == "1"
		st, tx, prev, answered := p.takePending(id, r.PostFormValue("txid"))
		v := phoneView{CSRF: p.csrf(id), Enrolled: st != nil, Link: link}
		if st != nil {
			v.Label = st.label
		}
		if tx == nil {
			if answered {
				v.Done = "already"
				p.answered(w, r, v, prev.returnURL)
				return
			}
			v.Error = "This sign-in is no longer open on this phone. / このサインインはこのシミュレーターで開かれていません。"
			p.render(w, http.StatusBadRequest, v)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), phoneTimeout)
		defer cancel()
		if err := Decline(ctx, p.hc, tx, reason); err != nil {
			phoneError(&v, err)
			p.render(w, http.StatusBadRequest, v)
			return
		}
		v.Done = "denied"
		if reason == DeclineCodesDiffer {
			v.Done = "differ"
		}
		p.mu.Lock()
		st.remember(tx.ID, answer{done: v.Done, returnURL: tx.ReturnURL})
		p.mu.Unlock()
		p.answered(w, r, v, tx.ReturnURL)
	}
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
