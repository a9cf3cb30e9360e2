package idp

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/watashi-id/watashi/templates"
)

// signinState is owned by the sign-in files (signin_*.go, accounts.go,
// session.go, wallet.go).
type signinState struct {
	tmpl     *templates.Set
	metrics  signinMetrics
	accounts decodedCache[Account]
	txs      decodedCache[signinTx]
	// authRequests is read by the provider's storage (oidc_storage.go).
	authRequests decodedCache[AuthRequest]
}

type signinMetrics struct {
	transactions *prometheus.CounterVec
	submissions  *prometheus.CounterVec
	verify       prometheus.Histogram
	accounts     prometheus.Counter
}

// initSignin loads the templates (a missing or broken template stops the
// start) and registers the sign-in metrics.
func (s *Server) initSignin(ctx context.Context) error {
	t, err := templates.New(s.opts.TemplateDir)
	if err != nil {
		return fmt.Errorf("idp: %w", err)
	}
	st := &signinState{tmpl: t}
	reg := s.opts.Metrics
	if st.metrics.transactions, err = registerMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_signin_transactions_total",
		Help: "Sign-in transactions opened, by purpose (signin, proofing).",
	}, []string{"purpose"})); err != nil {
		return err
	}
	if st.metrics.submissions, err = registerMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_wallet_submissions_total",
		Help: "Wallet submissions by outcome: verified or the error code.",
	}, []string{"outcome"})); err != nil {
		return err
	}
	if st.metrics.verify, err = registerMetric(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "watashi_wallet_verify_seconds",
		Help:    "Time to verify a submission's signatures (chain, revocation).",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})); err != nil {
		return err
	}
	if st.metrics.accounts, err = registerMetric(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watashi_accounts_created_total",
		Help: "Accounts created by identity proofing.",
	})); err != nil {
		return err
	}
	s.signin = st
	return nil
}

// mountSignin registers the resident-facing routes. Patterns are
// method-qualified, so other methods fall through to the provider's "/"
// and get its 404.
func (s *Server) mountSignin(mux *http.ServeMux) {
	mux.HandleFunc("GET /login", s.handleLogin)
	mux.HandleFunc("GET /login/tx/{id}/status", s.handleTxStatus)
	mux.HandleFunc("GET /login/tx/{id}/events", s.handleTxEvents)
	mux.HandleFunc("GET /login/tx/{id}/qr.png", s.handleTxQR)
	mux.HandleFunc("POST /login/tx/{id}/finish", s.handleTxFinish)
	mux.HandleFunc("GET /consent", s.handleConsent)
	mux.HandleFunc("POST /consent", s.handleConsentPost)
	s.mountAccount(mux)
	mux.HandleFunc("GET /logout", s.handleLogout)
	mux.HandleFunc("GET /wallet/open", s.handleWalletOpen)
	mux.HandleFunc("GET "+walletTxPath+"{id}", s.handleWalletGet)
	mux.HandleFunc("POST "+walletTxPath+"{id}", s.handleWalletPost)
	mux.Handle("GET /static/", http.StripPrefix("/static/", s.signin.tmpl.Static()))
}
