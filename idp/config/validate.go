package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/whitelist"
)

// problems collects Validate's findings, each prefixed with its field
// path, so that an operator fixes everything in one round.
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (p problems) err() error { return errors.Join(p...) }

// Validate reports every problem at once (errors.Join; each error is
// "field.path: what is wrong"). dev is the --dev flag: without it the
// production rules apply and a memory store, an http issuer, missing or
// short secrets, revocation off, permissive CORS and plain-http redirect
// URIs are refused.
func (c *Config) Validate(dev bool) error {
	var p problems
	if c.Dev && !dev {
		p.add("dev", "true requires the --dev flag")
	}
	c.validateIssuer(&p, dev)
	c.validateListen(&p)
	c.validateStore(&p, dev)
	c.validateSecrets(&p, dev)
	c.validateKEK(&p, dev)
	c.validatePKI(&p, dev)
	c.validateClients(&p, dev)
	c.validateWhitelist(&p, dev)
	c.validateTTLs(&p)
	c.validatePasskeys(&p)
	c.validateNotify(&p, dev)
	c.validateFactsMonitor(&p)
	c.validateWeb(&p, dev)
	return p.err()
}

func (c *Config) validateIssuer(p *problems, dev bool) {
	if c.Issuer == "" {
		p.add("issuer", "required")
		return
	}
	u, err := url.Parse(c.Issuer)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		p.add("issuer", "must be an absolute https URL")
	case u.Scheme != "https" && !dev:
		p.add("issuer", "must be https outside --dev")
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		p.add("issuer", "must not have a query, fragment or user info")
	case strings.HasSuffix(c.Issuer, "/"):
		p.add("issuer", "must not end with '/' (RPs compare it byte for byte)")
	}
}

func (c *Config) validateListen(p *problems) {
	l, t := c.listenAddrs()
	for _, x := range []struct{ path, addr string }{{"listen", l}, {"telemetry_listen", t}} {
		if _, port, err := net.SplitHostPort(x.addr); err != nil || port == "" {
			p.add(x.path, "%q is not host:port", x.addr)
		}
	}
	if _, port, _ := net.SplitHostPort(l); l == t && port != "0" {
		p.add("telemetry_listen", "must differ from listen: metrics and health stay off the public listener")
	}
}

// defaultRedisTimeout is store.NewRedis's command timeout when none is
// configured.
const defaultRedisTimeout = 2 * time.Second

// maxWaitReplicas bounds store.redis.wait_replicas: more replicas per
// master than this is a typing slip, and every durable write would fail.
const maxWaitReplicas = 16

func (c *Config) validateStore(p *problems, dev bool) {
	switch c.Store.Type {
	case "", "memory":
		if !dev {
			p.add("store.type", "memory forgets accounts and keys on restart and is for --dev only; use redis")
		}
		return
	case "redis":
	default:
		p.add("store.type", "%q: want memory or redis", c.Store.Type)
		return
	}
	r := c.Store.Redis
	if len(r.Addrs) == 0 {
		p.add("store.redis.addrs", "at least one host:port is required")
	}
	for i, a := range r.Addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			p.add(fmt.Sprintf("store.redis.addrs[%d]", i), "%q is not host:port", a)
		}
	}
	if r.Password != "" && r.PasswordFile != "" {
		p.add("store.redis.password", "set password or password_file, not both")
	}
	if r.PasswordFile != "" {
		if _, err := readSecretFile(r.PasswordFile); err != nil {
			p.add("store.redis.password_file", "%v", err)
		}
	}
	if r.DB < 0 {
		p.add("store.redis.db", "must not be negative")
	}
	if r.DB != 0 && len(r.Addrs) > 1 && r.MasterName == "" {
		p.add("store.redis.db", "Redis Cluster has only database 0")
	}
	if r.Timeout < 0 {
		p.add("store.redis.timeout", "must not be negative")
	}
	switch {
	case r.WaitReplicas < -1:
		p.add("store.redis.wait_replicas", "must be -1 (never wait), 0 (by topology) or a number of replicas")
	case r.WaitReplicas > maxWaitReplicas:
		p.add("store.redis.wait_replicas", "%d replicas: at most %d", r.WaitReplicas, maxWaitReplicas)
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = defaultRedisTimeout
	}
	waits := r.WaitReplicas > 0 || (r.WaitReplicas == 0 && (r.MasterName != "" || len(r.Addrs) > 1))
	switch {
	case r.WaitTimeout < 0:
		p.add("store.redis.wait_timeout", "must not be negative")
	case waits && r.WaitTimeout >= timeout:
		p.add("store.redis.wait_timeout", "%v must be below store.redis.timeout (%v): the wait shares the write's deadline", r.WaitTimeout, timeout)
	}
	t := r.TLS
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "") {
		p.add("store.redis.tls.enabled", "TLS settings are given but enabled is false")
	}
	if t.Enabled {
		if _, err := r.tlsConfig(); err != nil {
			p.add("store.redis.tls", "%v", err)
		}
	}
}

func (c *Config) validateSecrets(p *problems, dev bool) {
	for _, s := range c.secretSpecs() {
		key, err := s.load()
		switch {
		case err != nil:
			p.add(s.path, "%v", err)
		case key == nil && !dev:
			p.add(s.path, "required outside --dev (set %s_file or WATASHI_%s_FILE)", s.path, strings.ToUpper(strings.TrimPrefix(s.path, "secrets.")))
		}
	}
}

var oidPattern = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)

func (c *Config) validatePKI(p *problems, dev bool) {
	k := c.PKI
	if len(k.Anchors) > 0 {
		if _, err := pkibridge.LoadAnchors(k.Anchors...); err != nil {
			p.add("pki.anchors", "%v", err)
		}
	}
	for i, f := range k.Intermediates {
		if _, err := readCertFile(f); err != nil {
			p.add(fmt.Sprintf("pki.intermediates[%d]", i), "%v", err)
		}
	}
	for _, l := range []struct {
		path string
		oids []string
	}{{"pki.signature_policy_oids", k.SignaturePolicyOIDs}, {"pki.authentication_policy_oids", k.AuthenticationPolicyOIDs}} {
		for i, o := range l.oids {
			if !oidPattern.MatchString(o) {
				p.add(fmt.Sprintf("%s[%d]", l.path, i), "%q is not a dotted OID", o)
			}
		}
	}
	if k.Leeway < 0 || k.Leeway > time.Hour {
		p.add("pki.leeway", "must be between 0 and 1h")
	}
	r := k.Revocation
	mode, err := pkibridge.ParseRevocationMode(r.Mode)
	if err != nil {
		p.add("pki.revocation.mode", "%q: want require, prefer or off", r.Mode)
		return
	}
	if mode == pkibridge.RevocationOff {
		if !dev {
			p.add("pki.revocation.mode", "off accepts revoked certificates and is for --dev only")
		}
		return
	}
	if len(r.CRLs) == 0 && len(r.OCSP) == 0 {
		p.add("pki.revocation", "mode %s needs at least one crls or ocsp source (JPKI certificates name none)", mode)
	}
	if r.Timeout < 0 {
		p.add("pki.revocation.timeout", "must not be negative")
	}
	for i, crl := range r.CRLs {
		path := fmt.Sprintf("pki.revocation.crls[%d]", i)
		loc := crl.Location
		lower := strings.ToLower(loc)
		switch {
		case loc == "":
			p.add(path+".location", "required")
		case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
			if u, err := url.Parse(loc); err != nil || u.Host == "" {
				p.add(path+".location", "%q is not a valid URL", loc)
			}
		case strings.Contains(loc, "://"):
			p.add(path+".location", "only file paths and http(s) URLs are supported (fetch LDAP CRLs to a file)")
		default:
			if _, err := os.Stat(loc); err != nil {
				p.add(path+".location", "%v", err)
			}
		}
		if crl.Issuer != "" {
			if _, err := readIssuer(crl.Issuer); err != nil {
				p.add(path+".issuer", "%v", err)
			}
		}
	}
	for i, u := range r.OCSP {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
			p.add(fmt.Sprintf("pki.revocation.ocsp[%d]", i), "%q is not an http(s) URL", u)
		}
	}
}

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

func (c *Config) validateClients(p *problems, dev bool) {
	seen := map[string]bool{}
	for i, cc := range c.Clients {
		path := fmt.Sprintf("clients[%d]", i)
		if !clientIDPattern.MatchString(cc.ID) {
			p.add(path+".client_id", "%q: 1-128 characters from A-Z a-z 0-9 . _ ~ -", cc.ID)
		} else if seen[cc.ID] {
			p.add(path+".client_id", "%q is configured twice", cc.ID)
		}
		seen[cc.ID] = true
		if strings.TrimSpace(cc.DisplayName) == "" {
			p.add(path+".display_name", "required: residents see it on the wallet and consent screens")
		}
		native := cc.AuthMethod == clients.AuthNone
		switch cc.AuthMethod {
		case clients.AuthSecretBasic:
			switch {
			case cc.ClientSecretFile != "" && cc.ClientSecretHash != "":
				p.add(path+".client_secret_file", "set client_secret_file or client_secret_hash, not both")
			case cc.ClientSecretFile != "":
				if b, err := readSecretFile(cc.ClientSecretFile); err != nil {
					p.add(path+".client_secret_file", "%v", err)
				} else if len(b) < 16 {
					p.add(path+".client_secret_file", "the secret must be at least 16 characters")
				}
			case cc.ClientSecretHash != "":
				if _, err := whitelist.ParseSecretHash(cc.ClientSecretHash); err != nil {
					p.add(path+".client_secret_hash", "%v", err)
				}
			default:
				p.add(path+".client_secret_file", "client_secret_basic needs client_secret_file or client_secret_hash")
			}
		case clients.AuthPrivateKeyJWT:
			if cc.JWKSFile == "" {
				p.add(path+".jwks_file", "private_key_jwt needs the client's public keys")
			} else if err := checkJWKSFile(cc.JWKSFile); err != nil {
				p.add(path+".jwks_file", "%v", err)
			}
		case clients.AuthNone:
		default:
			p.add(path+".token_endpoint_auth_method", "%q: want private_key_jwt, client_secret_basic or none", cc.AuthMethod)
		}
		if cc.AuthMethod != clients.AuthSecretBasic && (cc.ClientSecretFile != "" || cc.ClientSecretHash != "") {
			p.add(path+".client_secret_file", "a secret is only used with client_secret_basic")
		}
		if cc.AuthMethod != clients.AuthPrivateKeyJWT && cc.JWKSFile != "" {
			p.add(path+".jwks_file", "keys are only used with private_key_jwt")
		}
		if len(cc.RedirectURIs) == 0 {
			p.add(path+".redirect_uris", "at least one is required")
		}
		redirectsOK := true
		for j, u := range cc.RedirectURIs {
			if msg := checkRedirectURI(u, native, dev); msg != "" {
				p.add(fmt.Sprintf("%s.redirect_uris[%d]", path, j), "%s", msg)
				redirectsOK = false
			}
		}
		for j, u := range cc.PostLogout {
			if msg := checkRedirectURI(u, native, dev); msg != "" {
				p.add(fmt.Sprintf("%s.post_logout_redirect_uris[%d]", path, j), "%s", msg)
			}
		}
		if cc.SectorIdentifierURI != "" {
			u, err := url.Parse(cc.SectorIdentifierURI)
			if err != nil || u.Host == "" || (u.Scheme != "https" && !(dev && u.Scheme == "http")) {
				p.add(path+".sector_identifier_uri", "must be an https URL")
			}
		} else if len(cc.RedirectURIs) > 0 && redirectsOK {
			// Without a sector_identifier_uri nothing is fetched.
			if _, err := clients.ResolveSector(context.Background(), &cc.Client, nil, dev); err != nil {
				p.add(path+".redirect_uris", "%v", strings.TrimPrefix(err.Error(), "clients: sector: "))
			}
		}
		for j, s := range cc.Scopes {
			if s == "" || strings.ContainsAny(s, " \t\"\\") {
				p.add(fmt.Sprintf("%s.scopes[%d]", path, j), "%q is not a scope token", s)
			}
		}
		switch cc.IDTokenAlg {
		case "", string(jose.ES256), string(jose.RS256):
		default:
			p.add(path+".id_token_signed_response_alg", "%q: want ES256 or RS256", cc.IDTokenAlg)
		}
		if cc.PolicyURI != "" {
			u, err := url.Parse(cc.PolicyURI)
			if err != nil || u.Host == "" || (u.Scheme != "https" && !(dev && u.Scheme == "http")) {
				p.add(path+".policy_uri", "must be an https URL (residents follow it from the consent screen)")
			}
		}
		if cc.LogoURI != "" {
			u, err := url.Parse(cc.LogoURI)
			if err != nil || u.Host == "" || (u.Scheme != "https" && !(dev && u.Scheme == "http")) {
				p.add(path+".logo_uri", "must be an https URL (Watashi fetches the logo to show it on the login and consent screens)")
			}
		}
		if cc.BackchannelLogoutURI != "" {
			u, err := url.Parse(cc.BackchannelLogoutURI)
			if err != nil || u.Host == "" || u.Fragment != "" || u.User != nil || len(cc.BackchannelLogoutURI) > 2000 ||
				(u.Scheme != "https" && !(dev && u.Scheme == "http")) {
				p.add(path+".backchannel_logout_uri", "must be an https URL without a fragment or user information, at most 2000 characters (Watashi posts logout tokens to it)")
			}
		}
		if cc.AgeAlternatives && !slices.Contains(cc.Scopes, "birthdate") && !slices.Contains(cc.Scopes, "profile") {
			p.add(path+".age_alternatives", "offers an age check instead of the birth date, but the client may not ask for the birth date (scopes birthdate or profile)")
		}
	}
}

// checkRedirectURI applies the redirect rules: absolute, no fragment;
// outside --dev https only, except that native clients (auth method
// none) may use loopback http (RFC 8252 §7.3) or a private-use scheme
// (§7.1, reverse domain name).
func checkRedirectURI(raw string, native, dev bool) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return fmt.Sprintf("%q is not an absolute URI", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "must not have a fragment"
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return "has no host"
		}
		return ""
	case "http":
		if u.Host == "" {
			return "has no host"
		}
		if dev || (native && web.IsLoopbackHost(u.Hostname())) {
			return ""
		}
		if native {
			return "must be https outside --dev (native clients may use http on a loopback address)"
		}
		return "must be https outside --dev"
	default:
		if native && strings.Contains(u.Scheme, ".") {
			return ""
		}
		return fmt.Sprintf("scheme %q: only https (and, for native clients, loopback http or a reverse-domain private-use scheme)", u.Scheme)
	}
}

func checkJWKSFile(name string) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("%s: not a JWK Set: %v", name, err)
	}
	if len(set.Keys) == 0 {
		return fmt.Errorf("%s: no keys", name)
	}
	for i, k := range set.Keys {
		if !k.IsPublic() {
			return fmt.Errorf("%s: key %d holds private key material; give the client's public keys only", name, i)
		}
		if !k.Valid() {
			return fmt.Errorf("%s: key %d is not a valid key", name, i)
		}
	}
	return nil
}

func (c *Config) validateWhitelist(p *problems, dev bool) {
	w := c.Whitelist
	if !w.Enabled {
		if len(w.Tiers) > 0 || w.AdminListen != "" || w.AdminTokenHashFile != "" ||
			len(w.TrustedSoftwareStatementIssuers) > 0 || w.RequireSoftwareStatement {
			p.add("whitelist.enabled", "whitelist settings are given but enabled is false")
		}
		return
	}
	if c.Store.Type != "redis" && !dev {
		p.add("whitelist.enabled", "the registry must live in Redis outside --dev (store.type: redis), so that every node and the watashi client commands share it")
	}
	if _, err := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(store.NewMemory(), store.ErrNotFound), Tiers: w.Tiers}); err != nil {
		p.add("whitelist.tiers", "%s", strings.TrimPrefix(err.Error(), "whitelist: "))
	}
	if (w.AdminListen == "") != (w.AdminTokenHashFile == "") {
		p.add("whitelist.admin_listen", "the admin API needs both admin_listen and admin_token_hash_file")
	}
	if w.AdminListen != "" {
		l, t := c.listenAddrs()
		if _, port, err := net.SplitHostPort(w.AdminListen); err != nil || port == "" {
			p.add("whitelist.admin_listen", "%q is not host:port", w.AdminListen)
		} else if port != "0" && (w.AdminListen == l || w.AdminListen == t) {
			p.add("whitelist.admin_listen", "must differ from listen and telemetry_listen: the admin API stays off the public listener")
		}
	}
	if w.AdminTokenHashFile != "" {
		reg, _ := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(store.NewMemory(), store.ErrNotFound)})
		if _, err := reg.AdminHandler(whitelist.AdminOptions{TokenHashFile: w.AdminTokenHashFile, Prefix: "/whitelist"}); err != nil {
			p.add("whitelist.admin_token_hash_file", "%s", strings.TrimPrefix(err.Error(), "whitelist: "))
		}
	}
	seen := map[string]bool{}
	for i, ti := range w.TrustedSoftwareStatementIssuers {
		path := fmt.Sprintf("whitelist.trusted_software_statement_issuers[%d]", i)
		if ti.Issuer == "" {
			p.add(path+".issuer", "required")
		} else if seen[ti.Issuer] {
			p.add(path+".issuer", "%q is listed twice", ti.Issuer)
		}
		seen[ti.Issuer] = true
		if ti.JWKSFile == "" {
			p.add(path+".jwks_file", "required")
		} else if _, err := readIssuerJWKS(ti.JWKSFile); err != nil {
			p.add(path+".jwks_file", "%v", err)
		}
	}
	if w.RequireSoftwareStatement && len(w.TrustedSoftwareStatementIssuers) == 0 {
		p.add("whitelist.require_software_statement", "needs at least one trusted_software_statement_issuers entry")
	}
}

func (c *Config) validateTTLs(p *problems) {
	t := c.TTLs
	for _, x := range []struct {
		path string
		d    time.Duration
	}{
		{"ttls.auth_request", t.AuthRequest}, {"ttls.transaction", t.Transaction}, {"ttls.code", t.Code},
		{"ttls.access_token", t.AccessToken}, {"ttls.refresh_token", t.RefreshToken}, {"ttls.id_token", t.IDToken},
		{"ttls.session", t.Session}, {"ttls.facts_recheck", t.FactsRecheck},
	} {
		if x.d < 0 {
			p.add(x.path, "must not be negative")
		}
	}
	o := c.ttlOptions()
	o.SetDefaults()
	if o.TransactionTTL >= o.AuthRequestTTL {
		p.add("ttls.transaction", "must be shorter than ttls.auth_request (%s), or the request expires under a slow card tap", o.AuthRequestTTL)
	}
	if o.CodeTTL > 10*time.Minute {
		p.add("ttls.code", "must be at most 10m (RFC 6749 §4.1.2)")
	}
	if c.KeyRotation > 0 && c.KeyRotation < time.Hour {
		p.add("key_rotation", "must be at least 1h so that JWKS caches keep up (negative disables)")
	}
}

func (c *Config) validateFactsMonitor(p *problems) {
	fm := c.FactsMonitor
	if fm.Interval < 0 || (fm.Interval > 0 && fm.Interval < time.Minute) || fm.Interval > 30*24*time.Hour {
		p.add("facts_monitor.interval", "must be between 1m and 720h (0: the default, 24h)")
	}
	if !fm.Enabled {
		return
	}
	rev := c.PKI.Revocation
	if len(rev.CRLs) == 0 && !(fm.OCSP && len(rev.OCSP) > 0) {
		p.add("facts_monitor.enabled", "needs pki.revocation.crls, or facts_monitor.ocsp with pki.revocation.ocsp: there is nothing to check against")
	}
	if fm.OCSP && len(rev.OCSP) == 0 {
		p.add("facts_monitor.ocsp", "needs pki.revocation.ocsp")
	}
}

var headerNamePattern = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

func (c *Config) validateWeb(p *problems, dev bool) {
	for i, o := range c.CORSAllowedOrigins {
		path := fmt.Sprintf("cors_allowed_origins[%d]", i)
		if o == "*" {
			if !dev {
				p.add(path, "\"*\" lets any site call the token endpoint from a browser; list origins")
			}
			continue
		}
		u, err := url.Parse(o)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			p.add(path, "%q is not an origin (scheme://host[:port])", o)
		case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			p.add(path, "%q: an origin has no path, query or fragment", o)
		case u.Scheme == "http" && !dev:
			p.add(path, "%q: http origins are refused outside --dev", o)
		}
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		p.add("trusted_proxies", "%v", err)
	}
	if c.ClientIPHeader != "" && !headerNamePattern.MatchString(c.ClientIPHeader) {
		p.add("client_ip_header", "%q is not a header name", c.ClientIPHeader)
	}
	if c.TemplateDir != "" {
		if fi, err := os.Stat(c.TemplateDir); err != nil {
			p.add("template_dir", "%v", err)
		} else if !fi.IsDir() {
			p.add("template_dir", "%s is not a directory", c.TemplateDir)
		}
	}
	if _, err := parseLogLevel(c.Log.Level); err != nil {
		p.add("log.level", "%v", err)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		p.add("log.format", "%q: want json or text", c.Log.Format)
	}
}

// parsePrefixes reads CIDR prefixes or single addresses. A /0 would
// believe every client's header and is refused.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("%q is neither a CIDR prefix nor an address", s))
				continue
			}
			pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if pfx.Bits() == 0 {
			errs = append(errs, fmt.Errorf("%q would trust every client's %s", s, "forwarded address"))
			continue
		}
		out = append(out, pfx.Masked())
	}
	return out, errors.Join(errs...)
}

func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
}
