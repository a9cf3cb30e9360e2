// Package notifytest is a real SMTP relay for tests: go-smtp with AUTH
// PLAIN, STARTTLS or implicit TLS under a throwaway CA, which can be
// stopped and started again on its port to stage an outage.
package notifytest
