// Package storetest holds the storage conformance suite that every backend
// runs, and a helper that starts a real redis-server for tests.
package storetest
