package idp

import (
	"context"
	"errors"
	"fmt"

	"github.com/watashi-id/watashi/idp/backchannel"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/factsmon"
	"github.com/watashi-id/watashi/idp/provider"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/ssf"
	"github.com/watashi-id/watashi/pkibridge"
)

// Outbox consumer names of the relying-party events.
const (
	consumerBackchannel = "backchannel-logout"
	consumerSSF         = "ssf"
)

// relyingPartyEvents builds what tells relying parties about residents'
// sessions and credentials: back-channel logout and the SSF transmitter,
// both fed by the events outbox and sending through the guarded fetcher.
func (s *Server) relyingPartyEvents() error {
	o := s.opts
	var err error
	if s.backchannel, err = backchannel.New(backchannel.Options{
		Store: o.Store, Issuer: s.web.Issuer(), Clients: s.clients, Keys: s.keys, Fetcher: o.Fetcher,
		SID: session.PairwiseSID, Logger: s.log, Metrics: o.Metrics, Now: o.Now,
	}); err != nil {
		return fmt.Errorf("idp: %w", err)
	}
	if s.ssf, err = ssf.New(ssf.Options{
		Store: o.Store, Web: s.web, Clients: s.clients, Grants: s.grants, Keys: s.keys, Fetcher: o.Fetcher,
		Auth: s.provider, Refused: provider.ErrClientRefused, KEK: o.KEK, Dev: o.Dev, Logger: s.log, Metrics: o.Metrics, Now: o.Now,
	}); err != nil {
		return fmt.Errorf("idp: %w", err)
	}
	return s.factsMonitor()
}

// factsMonitor builds the scheduled re-check of the facts' certificates
// when it is enabled: the verifier's CRLs are asked first (free), its
// OCSP responders, when allowed, for the rest.
func (s *Server) factsMonitor() error {
	fo := s.opts.FactsMonitor
	if !fo.Enabled {
		return nil
	}
	mo := factsmon.Options{Store: s.opts.Store, Accounts: s.accounts, Events: s.events, Interval: fo.Interval,
		Partitions: fo.Partitions, Tick: fo.Tick, Logger: s.log, Metrics: s.opts.Metrics, Now: s.opts.Now}
	v := s.opts.Verifier
	chk, ok := v.Revocation.(*pkibridge.Checker)
	switch {
	case v.Mode == pkibridge.RevocationOff || v.Revocation == nil:
		return errors.New("idp: the facts monitor needs revocation sources")
	case !ok:
		// A checker of another kind: it decides what it asks.
		mo.OCSP = v.Revocation
	default:
		if len(chk.CRLs) > 0 {
			mo.CRL = &pkibridge.Checker{CRLs: chk.CRLs, Logger: chk.Logger, SourceError: chk.SourceError}
		}
		if fo.OCSP && len(chk.OCSP) > 0 {
			mo.OCSP = &pkibridge.Checker{OCSP: chk.OCSP, Logger: chk.Logger, SourceError: chk.SourceError}
		}
	}
	if mo.CRL == nil && mo.OCSP == nil {
		return errors.New("idp: the facts monitor has no revocation source to ask (CRLs, or OCSP when allowed)")
	}
	var err error
	if s.monitor, err = factsmon.New(mo); err != nil {
		return fmt.Errorf("idp: %w", err)
	}
	return nil
}

// runRelyingPartyEvents consumes the outbox for both and delivers their
// queues until ctx ends.
func (s *Server) runRelyingPartyEvents(ctx context.Context) {
	consume := func(name string, h func(context.Context, events.Event) error) {
		if err := s.events.Consume(ctx, name, h); err != nil && ctx.Err() == nil {
			s.log.Error("events consumer stopped", "consumer", name, "err", err)
		}
	}
	go consume(consumerBackchannel, s.backchannel.Handle)
	go consume(consumerSSF, s.ssf.Handle)
	go s.backchannel.Run(ctx)
	if s.monitor != nil {
		go s.monitor.Run(ctx)
	}
	s.ssf.Run(ctx)
}

// routeNames are the metric labels of every route.
func routeNames() map[string]string {
	out := map[string]string{}
	for k, v := range provider.RouteNames() {
		out[k] = v
	}
	for k, v := range ssf.RouteNames() {
		out[k] = v
	}
	return out
}
