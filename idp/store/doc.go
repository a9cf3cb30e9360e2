// Package store is Watashi's storage primitive and its two backends.
//
// Every domain package (idp, whitelist, consent) defines the narrow
// interface it needs on top of the KV contract below, and the binary wires
// one backend into all of them:
//
//   - Memory: a mutex-guarded map with expiry, for development, the demo
//     and tests. `watashi serve` refuses it outside --dev because it
//     forgets everything on restart and cannot be shared between nodes.
//   - Redis: go-redis v9 UniversalClient (standalone, Sentinel, Cluster),
//     with a key prefix, context deadlines enforced
//     (ContextTimeoutEnabled) and Lua for the compare-and-swap.
//
// Records come in two lifetimes. Ephemeral records (auth requests, codes,
// grants and refresh tokens, sessions, sign-in transactions, rate-limit counters) are always
// written with a TTL, so an abandoned login cleans itself up. Durable
// records (accounts, certificate links, signing keys, clients, consents)
// are written with TTL 0 and need Redis persistence: run Redis with
// appendonly yes (AOF), see docs/operator-guide.md.
//
// With replicas (Sentinel, Cluster), a write that creates, changes or
// deletes a durable record waits until RedisOptions.WaitReplicas replicas
// have it (WAIT on the connection that wrote, which in Cluster is pinned
// to the key's master, following ASK and MOVED), so that a failover does
// not lose it; when they do not confirm in time the write fails with
// ErrNotReplicated. Ephemeral writes never wait.
//
// Atomicity is single-key: Take (GETDEL) makes authorization codes single
// use, SetNX makes one-time markers, CompareAndSwap moves a record from one
// state to the next exactly once. No operation spans two keys, so none can
// fail with CROSSSLOT in Cluster; keys of one family still carry a hash tag
// ({...}) chosen by the caller.
//
// Round trips are what a login pays for a shared store, so Do sends a
// batch of independent operations (get, set, SetNX, delete, counter) in
// one: a pipeline on Redis, which the Cluster client splits by node, each
// operation with its own result. A batch is not a transaction; its writes
// carry a TTL, so durable writes keep their wait for replicas. Instrument
// counts a batch as one operation, so the operation counts are the round
// trips.
//
// Backups stand on three more operations. Scan lists keys by prefix.
// Snapshot reads every durable record as they all stood at one instant,
// without blocking anyone: the Redis backend reads each master on a
// connection that Redis tells of every write under the prefix (CLIENT
// TRACKING in broadcast mode), and reports ErrSnapshotChanged when a
// durable record was written meanwhile, for the caller to try again.
// Restore writes a record whole, replacing its key, with stream IDs kept
// and the durable wait for replicas.
//
// Instrument wraps any backend with latency and error metrics.
//
// The conformance suite in storetest runs against both backends; the Redis
// runs start real redis-server processes on free ports: standalone, a
// Sentinel deployment and a Cluster (storetest.StartSentinel,
// StartCluster).
package store
