// Package delivery queues messages for destinations Watashi does not
// control — relying parties' back-channel logout endpoints, SSF
// receivers — in the store, so that a receiver's outage delays its own
// messages and nothing else, and a node that dies mid-delivery loses
// nothing.
//
// The flow: a producer Enqueues a job (an opaque payload under an ID it
// chooses, so that an event handled twice is queued once) for a
// destination. Run, on every node, wakes on a store pub/sub message or a
// tick, takes a short lease per destination (SetNX with a TTL, so one
// node works a destination at a time and its order holds), and hands
// each due job, oldest first, to the sender. Success deletes the job; a
// temporary failure reschedules it with exponential backoff and jitter
// and leaves the destination's later jobs for the next round; a
// permanent failure (Permanent), or MaxAttempts temporary ones, drops it
// with a log line and a metric. Every record has a TTL (Retention), and
// a destination holds at most MaxPerDest jobs: a receiver that never
// answers cannot grow the store.
//
// A queue whose receivers fetch their own messages (SSF poll delivery)
// is not Run: Pending lists a destination's jobs and Ack deletes them.
package delivery
