package config

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/metrics"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/whitelist"
)

// Options validates the config and builds what the provider runs on:
// the store, the certificate verifier with its revocation sources, the
// clients (secrets hashed, sectors resolved, which may fetch
// sector_identifier_uri documents), the keys and a metrics registry.
// Under --dev, missing keys are generated at random: everything keyed by
// them (sessions, subs) then lasts only as long as the process.
func (c *Config) Options(ctx context.Context, dev bool) (idp.Options, error) {
	if err := c.Validate(dev); err != nil {
		return idp.Options{}, err
	}
	logger := c.logger()
	o := c.ttlOptions()
	o.Issuer = c.Issuer
	o.Dev = dev
	o.Logger = logger
	o.AllowedOrigins = slices.Clone(c.CORSAllowedOrigins)
	o.TemplateDir = c.TemplateDir
	o.ClientIPHeader = c.ClientIPHeader
	o.TrustedProxies, _ = parsePrefixes(c.TrustedProxies)

	var err error
	keys := make([][]byte, 3)
	for i, s := range c.secretSpecs() {
		k, err := s.load()
		if err != nil {
			return idp.Options{}, fmt.Errorf("%s: %w", s.path, err)
		}
		if k == nil {
			k = make([]byte, 32)
			if _, err := rand.Read(k); err != nil {
				return idp.Options{}, err
			}
			logger.Warn("dev: generated an ephemeral key; it dies with the process", "key", s.path)
		}
		keys[i] = k
	}
	o.PairwiseKey, o.CookieKey = keys[0], keys[2]
	copy(o.TokenKey[:], keys[1])
	// Without a KEK (a memory store under --dev) the provider makes one
	// for the process.
	if o.KEK, err = c.KEK(dev); err != nil {
		return idp.Options{}, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.Metrics, o.Gatherer = reg, reg

	sourceErrors, err := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_revocation_source_errors_total",
		Help: "Revocation sources (OCSP responders, CRLs) that gave no deciding answer when asked, by kind of source.",
	}, []string{"kind"}))
	if err != nil {
		return idp.Options{}, err
	}
	for _, k := range []string{pkibridge.SourceOCSP, pkibridge.SourceCRL} {
		sourceErrors.WithLabelValues(k)
	}
	v, err := c.verifier(logger, func(kind string) { sourceErrors.WithLabelValues(kind).Inc() })
	if err != nil {
		return idp.Options{}, err
	}
	o.Verifier = v
	o.FactsMonitor = idp.FactsMonitorOptions{Enabled: c.FactsMonitor.Enabled, Interval: c.FactsMonitor.Interval, OCSP: c.FactsMonitor.OCSP}

	if o.Notify, err = c.notifyOptions(); err != nil {
		return idp.Options{}, fmt.Errorf("notify: %w", err)
	}
	if o.Passkeys, err = c.passkeyOptions(); err != nil {
		return idp.Options{}, err
	}

	// One guarded fetcher for every URL an integrator controls.
	o.Fetcher = whitelist.NewFetcher(whitelist.FetcherOptions{Dev: dev})
	clients, err := c.clients(ctx, o.Fetcher, dev)
	if err != nil {
		return idp.Options{}, err
	}
	o.Clients = clients

	kv, err := c.store(logger)
	if err != nil {
		return idp.Options{}, err
	}
	o.Store = kv
	if o.Blocks, err = c.NewBlocklist(kv, logger); err != nil {
		kv.Close()
		return idp.Options{}, err
	}
	if c.Whitelist.Enabled {
		if o.Registry, err = c.NewRegistry(kv, dev, logger); err != nil {
			kv.Close()
			return idp.Options{}, err
		}
		for _, ti := range c.Whitelist.TrustedSoftwareStatementIssuers {
			set, err := readIssuerJWKS(ti.JWKSFile)
			if err != nil {
				kv.Close()
				return idp.Options{}, fmt.Errorf("whitelist.trusted_software_statement_issuers: %s: %w", ti.Issuer, err)
			}
			o.TrustedSoftwareStatementIssuers = append(o.TrustedSoftwareStatementIssuers, whitelist.TrustedIssuer{Issuer: ti.Issuer, Keys: set})
		}
		o.RequireSoftwareStatement = c.Whitelist.RequireSoftwareStatement
	}
	return o, nil
}

func (c *Config) ttlOptions() idp.Options {
	t := c.TTLs
	return idp.Options{
		AuthRequestTTL: t.AuthRequest, TransactionTTL: t.Transaction, CodeTTL: t.Code,
		AccessTokenTTL: t.AccessToken, RefreshTokenTTL: t.RefreshToken, IDTokenTTL: t.IDToken,
		SessionTTL: t.Session, KeyRotation: c.KeyRotation, FactsRecheck: t.FactsRecheck,
	}
}

// NewLogger builds the process logger the config asks for (JSON by
// default, for log shippers).
func (c *Config) NewLogger(w io.Writer) *slog.Logger {
	lvl, _ := parseLogLevel(c.Log.Level)
	ho := &slog.HandlerOptions{Level: lvl}
	if c.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, ho))
	}
	return slog.New(slog.NewJSONHandler(w, ho))
}

// logger is NewLogger on the configured output (standard error unless
// SetLogOutput said otherwise).
func (c *Config) logger() *slog.Logger {
	out := c.logOutput
	if out == nil {
		out = os.Stderr
	}
	return c.NewLogger(out)
}

// store opens the configured store. The Redis client's own messages go to
// logger, so that they keep the configured log format.
func (c *Config) store(logger *slog.Logger) (store.KV, error) {
	if c.Store.Type != "redis" {
		return store.NewMemory(), nil
	}
	r := c.Store.Redis
	pw := r.Password
	if r.PasswordFile != "" {
		b, err := readSecretFile(r.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("store.redis.password_file: %w", err)
		}
		pw = string(b)
	}
	tc, err := r.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("store.redis.tls: %w", err)
	}
	kv, err := store.NewRedis(store.RedisOptions{
		Addrs: r.Addrs, MasterName: r.MasterName, Username: r.Username, Password: pw,
		DB: r.DB, TLS: tc, Prefix: r.Prefix, Timeout: r.Timeout, Logger: logger,
		WaitReplicas: r.WaitReplicas, WaitTimeout: r.WaitTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("store.redis: %w", err)
	}
	return kv, nil
}

func (r RedisConfig) tlsConfig() (*tls.Config, error) {
	if !r.TLS.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.TLS.ServerName}
	if r.TLS.CAFile != "" {
		pem, err := os.ReadFile(r.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca_file: no PEM certificate found")
		}
	}
	if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		return nil, errors.New("cert_file and key_file go together")
	}
	if r.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(r.TLS.CertFile, r.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// verifier builds the certificate verifier; sourceError counts the
// revocation sources that fail (see pkibridge.Checker.SourceError).
func (c *Config) verifier(logger *slog.Logger, sourceError func(kind string)) (*pkibridge.Verifier, error) {
	k := c.PKI
	anchors := pkibridge.DefaultAnchors()
	if len(k.Anchors) > 0 {
		var err error
		if anchors, err = pkibridge.LoadAnchors(k.Anchors...); err != nil {
			return nil, fmt.Errorf("pki.anchors: %w", err)
		}
	}
	var inter []*x509.Certificate
	for i, f := range k.Intermediates {
		cs, err := readCertFile(f)
		if err != nil {
			return nil, fmt.Errorf("pki.intermediates[%d]: %w", i, err)
		}
		inter = append(inter, cs...)
	}
	policy := pkibridge.DefaultPolicy()
	if len(k.SignaturePolicyOIDs) > 0 {
		policy.SignaturePolicies = slices.Clone(k.SignaturePolicyOIDs)
	}
	if len(k.AuthenticationPolicyOIDs) > 0 {
		policy.AuthenticationPolicies = slices.Clone(k.AuthenticationPolicyOIDs)
	}
	policy.AllowSHA1 = k.AllowSHA1
	mode, err := pkibridge.ParseRevocationMode(k.Revocation.Mode)
	if err != nil {
		return nil, fmt.Errorf("pki.revocation.mode: %w", err)
	}
	v := &pkibridge.Verifier{
		Anchors: anchors, Intermediates: inter, Policy: policy, Mode: mode,
		Leeway: k.Leeway, Logger: logger,
	}
	if mode != pkibridge.RevocationOff {
		chk, err := c.revocationChecker(anchors, logger, sourceError)
		if err != nil {
			return nil, err
		}
		v.Revocation = chk
	}
	return v, nil
}

func (c *Config) revocationChecker(anchors *pkibridge.Anchors, logger *slog.Logger, sourceError func(kind string)) (*pkibridge.Checker, error) {
	r := c.PKI.Revocation
	copts := pkibridge.CheckerOptions{
		CRL:         pkibridge.CRLOptions{Timeout: r.Timeout, Logger: logger},
		OCSP:        pkibridge.OCSPOptions{Timeout: r.Timeout, Logger: logger},
		Logger:      logger,
		SourceError: sourceError,
	}
	var unpaired []string
	for _, crl := range r.CRLs {
		if crl.Issuer == "" {
			unpaired = append(unpaired, crl.Location)
		}
	}
	chk, err := pkibridge.NewChecker(unpaired, r.OCSP, anchors.Certificates(), copts)
	if err != nil {
		return nil, fmt.Errorf("pki.revocation: %w", err)
	}
	for i, crl := range r.CRLs {
		if crl.Issuer == "" {
			continue
		}
		issuer, err := readIssuer(crl.Issuer)
		if err != nil {
			return nil, fmt.Errorf("pki.revocation.crls[%d].issuer: %w", i, err)
		}
		src, err := pkibridge.NewCRLSource(crl.Location, issuer, copts.CRL)
		if err != nil {
			return nil, fmt.Errorf("pki.revocation.crls[%d]: %w", i, err)
		}
		chk.CRLs = append(chk.CRLs, src)
	}
	return chk, nil
}

func readCertFile(name string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return pkibridge.ParseCertificates(b)
}

func readIssuer(name string) (*x509.Certificate, error) {
	certs, err := readCertFile(name)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s: want exactly one certificate, found %d", name, len(certs))
	}
	return certs[0], nil
}

func (c *Config) clients(ctx context.Context, f clients.Fetcher, dev bool) ([]*clients.Client, error) {
	var out []*clients.Client
	for i, cc := range c.Clients {
		path := fmt.Sprintf("clients[%d]", i)
		cl := cc.Client
		cl.RedirectURIs = slices.Clone(cl.RedirectURIs)
		cl.PostLogout = slices.Clone(cl.PostLogout)
		cl.Scopes = slices.Clone(cl.Scopes)
		switch {
		case cc.ClientSecretHash != "":
			cl.SecretHash = cc.ClientSecretHash
		case cc.ClientSecretFile != "":
			secret, err := readSecretFile(cc.ClientSecretFile)
			if err != nil {
				return nil, fmt.Errorf("%s.client_secret_file: %w", path, err)
			}
			if cl.SecretHash, err = clients.HashSecret(string(secret)); err != nil {
				return nil, fmt.Errorf("%s.client_secret_file: %w", path, err)
			}
		}
		if cc.JWKSFile != "" {
			b, err := os.ReadFile(cc.JWKSFile)
			if err != nil {
				return nil, fmt.Errorf("%s.jwks_file: %w", path, err)
			}
			cl.JWKS = b
		}
		sector, err := clients.ResolveSector(ctx, &cl, f, dev)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		cl.Sector = sector
		out = append(out, &cl)
	}
	return out, nil
}

// readIssuerJWKS reads a software statement issuer's public key set.
func readIssuerJWKS(name string) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	b, err := os.ReadFile(name)
	if err != nil {
		return set, err
	}
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
		return set, errors.New("not a JSON Web Key Set with at least one key")
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || !k.Valid() {
			return set, errors.New("the key set must hold valid public keys only")
		}
	}
	return set, nil
}

// OpenStore validates the store settings only and opens the store, for
// commands that work on the store alone (`watashi client`, `watashi
// keys`) and so need neither the PKI files nor the secrets.
func (c *Config) OpenStore(ctx context.Context, dev bool) (store.KV, error) {
	var p problems
	if c.Dev && !dev {
		p.add("dev", "true requires the --dev flag")
	}
	c.validateStore(&p, dev)
	if err := p.err(); err != nil {
		return nil, err
	}
	kv, err := c.store(c.logger())
	if err != nil {
		return nil, err
	}
	if err := kv.Ping(ctx); err != nil {
		kv.Close()
		return nil, fmt.Errorf("store unreachable: %w", err)
	}
	return kv, nil
}

// NewRegistry builds the whitelist registry on kv with the configured
// tiers (the default catalogue when the whitelist section is empty), for
// the server and the `watashi client` commands alike.
func (c *Config) NewRegistry(kv store.KV, dev bool, logger *slog.Logger) (*whitelist.Registry, error) {
	reg, err := whitelist.New(whitelist.Options{
		Backend: whitelist.KVBackend(kv, store.ErrNotFound), Tiers: c.Whitelist.Tiers, Dev: dev, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("whitelist: %w", err)
	}
	return reg, nil
}

// NewBlocklist builds the operators' kill switch on kv, for the server and
// the `watashi block` commands alike. It exists whether or not the
// whitelist is enabled: static clients, token labels and authenticator
// models can be blocked all the same.
func (c *Config) NewBlocklist(kv store.KV, logger *slog.Logger) (*whitelist.Blocklist, error) {
	l, err := whitelist.NewBlocklist(whitelist.BlocklistOptions{Backend: whitelist.KVBackend(kv, store.ErrNotFound), Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("block list: %w", err)
	}
	return l, nil
}
