package notify

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Paths of the links in the mails.
const (
	ConfirmPath = "/notify/confirm"
	NotMePath   = "/notify/not-me"
)

var jst = func() *time.Location {
	if l, err := time.LoadLocation("Asia/Tokyo"); err == nil {
		return l
	}
	return time.FixedZone("JST", 9*3600)
}()

// tokenNames are the JPKI token labels as residents know them.
var tokenNames = map[string][2]string{ // label -> {ja, en}
	"JPKIAPICCTOKEN2": {"マイナンバーカード", "My Number Card"},
	"JPKIAPGPSETOKEN": {"スマートフォン（Android）の電子証明書", "the certificate on an Android smartphone"},
	"JPKIAPIOSTOKEN":  {"スマートフォン（iPhone）の電子証明書", "the certificate on an iPhone"},
}

// method says how a sign-in was made, in both languages: the card or
// phone by its token label, a passkey by the resident's own name for it.
// Nothing else of the sign-in goes into a mail.
func (n *Notifier) method(ctx context.Context, p *payload) (ja, en string, err error) {
	kind, ref, _ := strings.Cut(p.Method, ":")
	switch kind {
	case "jpki":
		if t, ok := tokenNames[ref]; ok {
			return t[0], t[1], nil
		}
		return "マイナンバーカードまたはスマートフォンの電子証明書", "the My Number Card or a smartphone certificate", nil
	case "passkey":
		name, err := n.o.Names.PasskeyName(ctx, p.Account, ref)
		if err != nil || name == "" {
			return "パスキー", "a passkey", err
		}
		name = oneLine(name)
		return "パスキー「" + name + "」", "the passkey \"" + name + "\"", nil
	}
	return "不明な方法", "an unknown method", nil
}

// oneLine keeps a resident-chosen name from breaking the mail's layout.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x2028 || r == 0x2029 {
			return ' '
		}
		return r
	}, s)
}

func (n *Notifier) render(ctx context.Context, p *payload) (*Mail, error) {
	host := n.o.Issuer
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	host, _, _ = strings.Cut(host, "/")
	host, _, _ = strings.Cut(host, ":")
	m := &Mail{Host: host}
	when := p.Time.In(jst).Format("2006-01-02 15:04 MST")
	switch p.Kind {
	case kindConfirm:
		link := n.link(ConfirmPath, p.Token)
		m.Subject = "メールアドレスの確認 / Confirm your address – Watashi"
		m.Body = fmt.Sprintf(`Watashi のサインイン通知をこのアドレスで受け取るには、24時間以内に次のリンクを開いて確認してください。
%s
お心当たりがなければ、このメールは無視してください。何も登録されません。

To receive Watashi's sign-in notices at this address, open this link within 24 hours and confirm:
%s
If you did not ask for this, ignore this mail; nothing will be set up.
`, link, link)
	case kindSignedIn:
		name := "Watashi アカウント / Watashi account"
		if p.Client != "" {
			nm, err := n.o.Names.ClientName(ctx, p.Client)
			if err != nil {
				return nil, err
			}
			name = oneLine(nm)
			if name == "" {
				name = "登録が取り消されたサービス / a service no longer registered"
			}
		}
		ja, en, err := n.method(ctx, p)
		if err != nil {
			return nil, err
		}
		notMe := n.link(NotMePath, n.notMeToken(p.Account))
		m.Subject = "サインインのお知らせ / You signed in – Watashi"
		m.Body = fmt.Sprintf(`Watashi でサインインがありました。
サービス: %s
日時: %s
方法: %s

お心当たりがない場合は、次のリンクからすべての端末をサインアウトし、アカウントのページでその認証手段を削除してください。
%s

You signed in with Watashi.
Service: %s
When: %s
Method: %s

If this wasn't you, sign out everywhere with this link and remove that authenticator on your account page:
%s
`, name, when, ja, notMe, name, when, en, notMe)
	case kindFactsStale:
		account := strings.TrimSuffix(n.o.Issuer, "/") + "/account"
		m.Subject = "本人確認をもう一度お願いします / Please prove your identity again – Watashi"
		m.Body = fmt.Sprintf(`本人確認に使った署名用電子証明書が失効していることがわかりました（引っ越しや氏名の変更、カードの更新などで失効します）。
登録されている基本4情報が最新でない可能性があります。新しい証明書で、もう一度本人確認をしてください。
%s

The signature certificate you proved your identity with has been revoked (a move, a change of name or a new card revokes it).
The facts Watashi holds may be out of date. Please prove your identity again with your new certificate:
%s
`, account, account)
	default:
		return nil, &PermanentError{Err: fmt.Errorf("unknown mail kind %q", p.Kind)}
	}
	return m, nil
}
