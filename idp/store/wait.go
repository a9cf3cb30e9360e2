package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// durable runs write on one connection to the master that owns key and,
// when write reports that it changed a durable record, waits on that same
// connection until r.waitN replicas have acknowledged it. WAIT counts the
// writes of its own connection only, which is why the two must share one:
// through the pooled client they could land on different connections
// (and, in Cluster, a keyless WAIT on a different node).
func (r *Redis) durable(ctx context.Context, key string, write func(c redis.Cmdable) (bool, error)) error {
	return r.pinned(ctx, r.k(key), func(c *redis.Conn) error {
		changed, err := write(c)
		if err != nil || !changed {
			return err
		}
		n, err := c.Wait(ctx, r.waitN, r.waitT).Result()
		if err != nil {
			return fmt.Errorf("store: WAIT: %w", err)
		}
		if int(n) < r.waitN {
			return fmt.Errorf("%w: %d of %d within %v", ErrNotReplicated, n, r.waitN, r.waitT)
		}
		return nil
	})
}

// pinned runs fn on a single connection to the master owning key (the
// prefixed key).
func (r *Redis) pinned(ctx context.Context, key string, fn func(c *redis.Conn) error) error {
	switch c := r.c.(type) {
	case *redis.ClusterClient:
		return pinnedCluster(ctx, c, key, fn)
	case *redis.Client: // standalone, and Sentinel's failover client
		conn := c.Conn()
		defer conn.Close()
		return fn(conn)
	default:
		return fmt.Errorf("store: no pinned connection for %T", r.c)
	}
}

// maxRedirects bounds how often one durable write follows MOVED or ASK:
// a slot moves once per migration, so a handful covers a reshard in
// progress without looping on a cluster that disagrees with itself.
const maxRedirects = 5

// pinnedCluster does what the cluster client does for a single command
// (route by slot, follow MOVED and ASK) for a connection held across two
// commands, the write and its WAIT.
func pinnedCluster(ctx context.Context, cc *redis.ClusterClient, key string, fn func(c *redis.Conn) error) error {
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return err
	}
	asking := false
	for range maxRedirects {
		err = onConn(ctx, node, asking, fn)
		kind, addr := redirect(err)
		if kind == "" {
			return err
		}
		if kind == "MOVED" {
			// The slot has moved for good: let the client learn the new
			// layout for everyone else, and follow this redirect now.
			cc.ReloadState(ctx)
		}
		asking = kind == "ASK"
		if node, err = masterByAddr(ctx, cc, addr); err != nil {
			return err
		}
	}
	return fmt.Errorf("store: key kept moving after %d redirects: %w", maxRedirects, err)
}

func onConn(ctx context.Context, node *redis.Client, asking bool, fn func(c *redis.Conn) error) error {
	conn := node.Conn()
	defer conn.Close()
	if asking {
		// ASKING admits the next command for a slot being imported.
		if err := conn.Do(ctx, "asking").Err(); err != nil {
			return err
		}
	}
	return fn(conn)
}

// redirect parses a cluster redirection ("MOVED 3999 127.0.0.1:6381").
func redirect(err error) (kind, addr string) {
	var rerr redis.Error
	if err == nil || !errors.As(err, &rerr) {
		return "", ""
	}
	f := strings.Fields(rerr.Error())
	if len(f) == 3 && (f[0] == "MOVED" || f[0] == "ASK") {
		return f[0], f[2]
	}
	return "", ""
}

// masterByAddr finds the client the cluster client keeps for the master
// at addr (a redirect always names a master).
func masterByAddr(ctx context.Context, cc *redis.ClusterClient, addr string) (*redis.Client, error) {
	var mu sync.Mutex
	var found *redis.Client
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		if c.Options().Addr == addr {
			mu.Lock()
			found = c
			mu.Unlock()
		}
		return nil
	})
	if found != nil {
		return found, nil
	}
	if err == nil {
		err = errors.New("unknown node")
	}
	return nil, fmt.Errorf("store: redirected to %s: %w", addr, err)
}
