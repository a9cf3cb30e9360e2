// Package storetest holds the storage conformance suite that every backend
// runs, and helpers that start real Redis topologies for tests on loopback
// ports: one redis-server (StartRedis), a master with replicas
// (StartReplicated), a Sentinel deployment (StartSentinel) and a Cluster
// (StartCluster), with the faults the HA tests inject: SIGKILL, SIGSTOP,
// forced failover, slot migration.
package storetest
