package storetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Node is one redis-server process of a topology, on a loopback port.
type Node struct {
	Addr string
	Port int
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
	c    *redis.Client
}

// Kill ends the process with SIGKILL, as a crash or an OOM kill would:
// no shutdown, no final AOF fsync, no goodbye to replicas or sentinels.
func (n *Node) Kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// Client is a plain client to this node alone (no redirects, no
// failover), for inspecting one node. It is closed with the node.
func (n *Node) Client() *redis.Client {
	n.once.Do(func() {
		n.c = redis.NewClient(&redis.Options{Addr: n.Addr, DialTimeout: time.Second, ReadTimeout: 5 * time.Second, MaxRetries: -1})
	})
	return n.c
}

func redisBinary(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if RequireEnv("WATASHI_REQUIRE_REDIS") {
			t.Fatalf("%s not found and WATASHI_REQUIRE_REDIS is set: %v", name, err)
		}
		t.Skipf("%s not installed (set WATASHI_REQUIRE_REDIS=1 to make this fatal)", name)
	}
	return bin
}

// StartNode starts redis-server on a free port with args (after the
// port, so that a config file can come first) and waits for PING.
// conf, when set, is written as the config file with "{port}" and
// "{dir}" filled in (Sentinel needs a file it can rewrite).
func StartNode(t testing.TB, conf string, args ...string) *Node {
	t.Helper()
	bin := redisBinary(t, "redis-server")
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		var argv []string
		if conf != "" {
			file := filepath.Join(dir, "redis.conf")
			body := strings.NewReplacer("{port}", strconv.Itoa(port), "{dir}", dir).Replace(conf)
			if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			argv = append(argv, file)
		}
		argv = append(argv, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
			"--daemonize", "no", "--loglevel", "notice", "--logfile", filepath.Join(dir, "redis.log"))
		argv = append(argv, args...)
		cmd := exec.Command(bin, argv...)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		n := &Node{Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, Dir: dir, cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(n.done) }()
		if waitRedis(n.Addr, 5*time.Second) {
			t.Cleanup(func() {
				n.Kill()
				if n.c != nil {
					n.c.Close()
				}
			})
			return n
		}
		n.Kill()
	}
	t.Fatal("redis-server did not start")
	return nil
}

// LogTail returns the end of the node's log, for failure messages.
func (n *Node) LogTail() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "redis.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// persistence is what every data node of the HA topologies runs with:
// AOF as in production (deploy/redis.conf); no RDB snapshots, which
// would only compete for the CI machine's two cores.
var persistence = []string{"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
	"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}

// StartReplicated starts a master and replicas replicas of it, without
// sentinels, and returns once every replica is in sync; the master is
// the first node.
func StartReplicated(t testing.TB, replicas int) []*Node {
	t.Helper()
	master := StartNode(t, "", persistence...)
	nodes := []*Node{master}
	for range replicas {
		nodes = append(nodes, StartNode(t, "", append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port)}, persistence...)...))
	}
	waitAcks(t, master, replicas)
	return nodes
}

// waitAcks waits until replicas replicas acknowledge a write to master
// (WAIT), which is later than INFO's state=online: a replica that has
// just loaded its first copy may still be busy (rewriting its AOF) and
// slow to answer.
func waitAcks(t testing.TB, master *Node, replicas int) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, 30*time.Second, "replicas acknowledging writes", func() error {
		conn := master.Client().Conn()
		defer conn.Close()
		if err := conn.Set(ctx, "storetest:ready", "1", time.Minute).Err(); err != nil {
			return err
		}
		n, err := conn.Wait(ctx, replicas, 100*time.Millisecond).Result()
		if err == nil && int(n) < replicas {
			err = fmt.Errorf("%d of %d replicas acknowledged", n, replicas)
		}
		return err
	})
}

// Pause stops the process (SIGSTOP): it keeps its connections but
// answers nothing, as a node does in a long GC-like stall or behind a
// partition. Resume continues it.
func (n *Node) Pause() { _ = n.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused node (SIGCONT).
func (n *Node) Resume() { _ = n.cmd.Process.Signal(syscall.SIGCONT) }

// Sentinel is a Sentinel deployment: one master, its replicas and the
// sentinels that watch them, all on loopback ports.
type Sentinel struct {
	MasterName string
	// Data holds the data nodes; Data[0] is the first master.
	Data []*Node
	// Sentinels holds the sentinel processes; SentinelAddrs their
	// addresses, which is what a client is configured with.
	Sentinels     []*Node
	SentinelAddrs []string
	// DownAfter is how long the sentinels wait before they call a silent
	// master down.
	DownAfter time.Duration
	t         testing.TB
}

// FailoverWithin bounds how long a test waits for the sentinels to
// elect a new master after the old one died. An election the sentinels
// fail to agree on (split votes, more likely on a loaded machine) is
// tried again only after twice the failover timeout (10 s), so the
// bound leaves room for two retries.
const FailoverWithin = 60 * time.Second

// StartSentinel starts a master, replicas replicas and sentinels
// sentinels (quorum: a majority), and returns once every sentinel knows
// every replica and every other sentinel, so that a failover can be
// agreed. It skips or fails like StartRedis when redis-server is absent.
func StartSentinel(t testing.TB, replicas, sentinels int) *Sentinel {
	t.Helper()
	s := &Sentinel{MasterName: "watashi", DownAfter: time.Second, t: t}
	s.Data = StartReplicated(t, replicas)
	master := s.Data[0]
	ctx := context.Background()
	quorum := sentinels/2 + 1
	conf := fmt.Sprintf(`sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d
sentinel down-after-milliseconds %[1]s %[4]d
sentinel failover-timeout %[1]s 10000
sentinel parallel-syncs %[1]s 1
`, s.MasterName, master.Port, quorum, s.DownAfter.Milliseconds())
	for range sentinels {
		n := StartNode(t, conf, "--sentinel")
		s.Sentinels = append(s.Sentinels, n)
		s.SentinelAddrs = append(s.SentinelAddrs, n.Addr)
	}
	waitFor(t, 30*time.Second, "sentinels to discover the topology", func() error {
		for _, n := range s.Sentinels {
			sc := redis.NewSentinelClient(&redis.Options{Addr: n.Addr})
			reps, err := sc.Replicas(ctx, s.MasterName).Result()
			if err == nil && len(reps) < replicas {
				err = fmt.Errorf("%s knows %d replicas", n.Addr, len(reps))
			}
			if err == nil {
				var peers []map[string]string
				if peers, err = sc.Sentinels(ctx, s.MasterName).Result(); err == nil && len(peers) < sentinels-1 {
					err = fmt.Errorf("%s knows %d other sentinels", n.Addr, len(peers))
				}
			}
			sc.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	return s
}

// MasterAddr asks the sentinels which node is the master now (the first
// that answers).
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var last error
	for _, a := range s.SentinelAddrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: a, DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second})
		hp, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
		sc.Close()
		if err == nil && len(hp) == 2 {
			return hp[0] + ":" + hp[1], nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel answered: %v", last)
}

// Node returns the data node at addr, or nil.
func (s *Sentinel) Node(addr string) *Node {
	for _, n := range s.Data {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Failover forces a failover (SENTINEL FAILOVER: no agreement needed,
// the master stays up and becomes a replica) and returns the new
// master's address once the sentinels report it.
func (s *Sentinel) Failover(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	old, err := s.MasterAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddrs[0]})
	defer sc.Close()
	if err := sc.Failover(ctx, s.MasterName).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	return s.WaitNewMaster(t, old, 30*time.Second)
}

// WaitNewMaster waits until the sentinels name a master other than old
// and that node answers as a master; it returns its address.
func (s *Sentinel) WaitNewMaster(t testing.TB, old string, within time.Duration) string {
	t.Helper()
	ctx := context.Background()
	var now string
	waitFor(t, within, "a new master", func() error {
		addr, err := s.MasterAddr(ctx)
		if err != nil {
			return err
		}
		if addr == old {
			return fmt.Errorf("master still %s", old)
		}
		n := s.Node(addr)
		if n == nil {
			return fmt.Errorf("unknown master %s", addr)
		}
		role, err := n.Client().Do(ctx, "role").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s is %v", addr, role)
		}
		now = addr
		return nil
	})
	return now
}

// waitAcksCluster is waitAcks for a cluster master, writing a key of a
// slot it serves.
func waitAcksCluster(t testing.TB, master *Node, replicas int) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, 30*time.Second, "cluster replicas acknowledging writes", func() error {
		conn := master.Client().Conn()
		defer conn.Close()
		slots, err := conn.ClusterSlots(ctx).Result()
		if err != nil {
			return err
		}
		var own [][2]int64
		for _, r := range slots {
			if len(r.Nodes) > 0 && r.Nodes[0].Addr == master.Addr {
				own = append(own, [2]int64{int64(r.Start), int64(r.End)})
			}
		}
		if len(own) == 0 {
			return fmt.Errorf("%s serves no slot yet", master.Addr)
		}
		// A key of a slot the master serves (a cluster node refuses the
		// others): probe names until one hashes into its ranges.
		key := ""
		for i := 0; key == "" && i < 1000; i++ {
			k := fmt.Sprintf("storetest:ready:%d", i)
			s, err := conn.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				return err
			}
			for _, r := range own {
				if r[0] <= s && s <= r[1] {
					key = k
				}
			}
		}
		if err := conn.Set(ctx, key, "1", time.Minute).Err(); err != nil {
			return err
		}
		n, err := conn.Wait(ctx, replicas, 100*time.Millisecond).Result()
		if err == nil && int(n) < replicas {
			err = fmt.Errorf("%s: %d of %d replicas acknowledged", master.Addr, n, replicas)
		}
		return err
	})
}

// Cluster is a Redis Cluster on loopback ports.
type Cluster struct {
	Nodes []*Node
}

// StartCluster starts masters*(1+replicasPerMaster) nodes with
// --cluster-enabled, joins them with `redis-cli --cluster create` and
// returns once every node reports cluster_state:ok, the nodes agree on
// the slots and every master's replicas acknowledge writes. It skips or fails like StartRedis when redis-server or
// redis-cli is absent.
func StartCluster(t testing.TB, masters, replicasPerMaster int) *Cluster {
	t.Helper()
	cli := redisBinary(t, "redis-cli")
	c := &Cluster{}
	args := append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "2000"}, persistence...)
	for range masters * (1 + replicasPerMaster) {
		c.Nodes = append(c.Nodes, StartNode(t, "", args...))
	}
	create := []string{"--cluster", "create"}
	create = append(create, c.Addrs()...)
	create = append(create, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	if out, err := exec.Command(cli, create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitConsistent(t, 30*time.Second)
	// cluster_state:ok says nothing of replication: wait until every
	// master's replicas are in sync, or the first durable write would
	// wait for a replica still loading its first copy.
	ms, _ := c.Masters(t)
	for _, m := range ms {
		waitAcksCluster(t, m, replicasPerMaster)
	}
	return c
}

// Addrs lists every node's address (a client's seed list).
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr)
	}
	return out
}

// WaitConsistent waits until every node reports cluster_state:ok and
// `redis-cli --cluster check` finds the slot layout agreed and complete.
func (c *Cluster) WaitConsistent(t testing.TB, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	cli := redisBinary(t, "redis-cli")
	waitFor(t, within, "cluster consistent", func() error {
		for _, n := range c.Nodes {
			info, err := n.Client().ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s: not ok", n.Addr)
			}
		}
		out, err := exec.Command(cli, "--cluster", "check", c.Nodes[0].Addr).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "All nodes agree") || !strings.Contains(string(out), "All 16384 slots covered") {
			return fmt.Errorf("check: %v\n%s", err, out)
		}
		return nil
	})
}

// Masters returns the nodes that are masters now, with their node IDs.
func (c *Cluster) Masters(t testing.TB) (nodes []*Node, ids []string) {
	t.Helper()
	ctx := context.Background()
	for _, n := range c.Nodes {
		role, err := n.Client().Do(ctx, "role").Slice()
		if err != nil {
			t.Fatal(err)
		}
		if len(role) > 0 && role[0] == "master" {
			id, err := n.Client().Do(ctx, "cluster", "myid").Text()
			if err != nil {
				t.Fatal(err)
			}
			nodes = append(nodes, n)
			ids = append(ids, id)
		}
	}
	return nodes, ids
}

// MoveSlots migrates slots slots, with their keys, from the master with
// ID from to the master with ID to, as an operator does when adding
// capacity: `redis-cli --cluster reshard`, key by key with MIGRATE while
// clients keep writing. It blocks until the reshard is done.
func (c *Cluster) MoveSlots(t testing.TB, from, to string, slots int) {
	t.Helper()
	cli := redisBinary(t, "redis-cli")
	out, err := exec.Command(cli, "--cluster", "reshard", c.Nodes[0].Addr,
		"--cluster-from", from, "--cluster-to", to, "--cluster-slots", strconv.Itoa(slots),
		"--cluster-yes", "--cluster-pipeline", "100").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster reshard: %v\n%.4000s", err, out)
	}
}

// waitFor polls check every 50 ms until it returns nil or within passes.
func waitFor(t testing.TB, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Migration is one slot being moved by hand between two masters, the
// steps `redis-cli --cluster reshard` takes for each slot, held open so
// that a test can write while the slot is half moved (clients then get
// ASK for keys already gone from the source).
type Migration struct {
	c        *Cluster
	slot     int
	from, to *Node
	toID     string
}

// BeginMigration marks slot importing on to and migrating on from.
func (c *Cluster) BeginMigration(t testing.TB, slot int, from, to *Node) *Migration {
	t.Helper()
	ctx := context.Background()
	fromID, err := from.Client().Do(ctx, "cluster", "myid").Text()
	if err != nil {
		t.Fatal(err)
	}
	toID, err := to.Client().Do(ctx, "cluster", "myid").Text()
	if err != nil {
		t.Fatal(err)
	}
	if err := to.Client().Do(ctx, "cluster", "setslot", slot, "importing", fromID).Err(); err != nil {
		t.Fatalf("SETSLOT IMPORTING: %v", err)
	}
	if err := from.Client().Do(ctx, "cluster", "setslot", slot, "migrating", toID).Err(); err != nil {
		t.Fatalf("SETSLOT MIGRATING: %v", err)
	}
	return &Migration{c: c, slot: slot, from: from, to: to, toID: toID}
}

// Finish moves the slot's remaining keys with MIGRATE and gives the slot
// to the target on every master.
func (m *Migration) Finish(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	for {
		keys, err := m.from.Client().ClusterGetKeysInSlot(ctx, m.slot, 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"migrate", "127.0.0.1", m.to.Port, "", 0, 5000, "keys"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := m.from.Client().Do(ctx, args...).Err(); err != nil {
			t.Fatalf("MIGRATE: %v", err)
		}
	}
	masters, _ := m.c.Masters(t)
	// The target first, then the source, as redis-cli does: the slot is
	// never without an owner that accepts it.
	order := []*Node{m.to, m.from}
	for _, n := range masters {
		if n != m.to && n != m.from {
			order = append(order, n)
		}
	}
	for _, n := range order {
		if err := n.Client().Do(ctx, "cluster", "setslot", m.slot, "node", m.toID).Err(); err != nil {
			t.Fatalf("SETSLOT NODE on %s: %v", n.Addr, err)
		}
	}
	m.c.WaitConsistent(t, 30*time.Second)
}

// Owner returns the master serving slot now.
func (c *Cluster) Owner(t testing.TB, slot int) *Node {
	t.Helper()
	slots, err := c.Nodes[0].Client().ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if int(s.Start) <= slot && slot <= int(s.End) && len(s.Nodes) > 0 {
			if n := c.node(s.Nodes[0].Addr); n != nil {
				return n
			}
		}
	}
	t.Fatalf("no owner for slot %d", slot)
	return nil
}

func (c *Cluster) node(addr string) *Node {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}
