package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/blogstack/redisadapter/internal/await"
)

// MasterName is the master the sentinels of StartSentinel watch.
const MasterName = "mymaster"

// SentinelSet is a master, its replica and three sentinels (quorum 2,
// down-after-milliseconds 1000).
type SentinelSet struct {
	Master, Replica *Server
	Sentinels       []*Server
}

// Addrs are the sentinels' addresses.
func (s *SentinelSet) Addrs() []string { return addrs(s.Sentinels) }

func addrs(servers []*Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Addr()
	}
	return out
}

// StartSentinel starts a sentinel set and returns once every sentinel
// knows the replica and the two other sentinels.
func StartSentinel(t testing.TB) *SentinelSet {
	t.Helper()
	Backend(t)
	set := &SentinelSet{Master: &Server{Port: FreePort(t)}}
	set.Replica = &Server{Port: FreePort(t), args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(set.Master.Port)}}
	startAll(t, set.Master, set.Replica)
	for range 3 {
		port := FreePort(t)
		set.Sentinels = append(set.Sentinels, &Server{Port: port, sentinelConf: fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 3000
sentinel parallel-syncs %s 1
`, port, MasterName, set.Master.Port, MasterName, MasterName, MasterName)})
	}
	startAll(t, set.Sentinels...)
	await.Check(t, 30*time.Second, 50*time.Millisecond, "sentinels discover the replica and each other", func(ctx context.Context) error {
		for _, sn := range set.Sentinels {
			msg, err := do(ctx, sn.Addr(), "SENTINEL", "MASTER", MasterName)
			if err != nil {
				return err
			}
			m, err := msg.AsStrMap()
			if err != nil {
				return err
			}
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("sentinel %d: %s replicas, %s other sentinels", sn.Port, m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return nil
	})
	return set
}

// Describe returns what each sentinel says of the master and of itself
// (TILT mode, which a stalled process enters for 30 s and in which it
// elects nobody, shows there), for a test to log when a failover does not
// come.
func (s *SentinelSet) Describe(ctx context.Context) string {
	var b strings.Builder
	for _, sn := range s.Sentinels {
		fmt.Fprintf(&b, "sentinel %d:", sn.Port)
		for _, cmd := range [][]string{{"SENTINEL", "MASTER", MasterName}, {"INFO", "sentinel"}} {
			msg, err := do(ctx, sn.Addr(), cmd...)
			if err != nil {
				fmt.Fprintf(&b, " %s: %v;", cmd[0], err)
				continue
			}
			if m, err := msg.AsStrMap(); err == nil {
				fmt.Fprintf(&b, " flags=%s num-slaves=%s failover-state=%s;", m["flags"], m["num-slaves"], m["failover-state"])
			} else if txt, err := msg.ToString(); err == nil {
				fmt.Fprintf(&b, " %s;", strings.Join(strings.Fields(txt), " "))
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// CurrentMaster asks the first sentinel that answers for the master's address.
func (s *SentinelSet) CurrentMaster(ctx context.Context) (string, error) {
	var err error
	for _, sn := range s.Sentinels {
		var msg rueidis.RedisMessage
		var addr []string
		if msg, err = do(ctx, sn.Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName); err == nil {
			addr, err = msg.AsStrSlice()
		}
		if err == nil && len(addr) == 2 {
			return addr[0] + ":" + addr[1], nil
		}
	}
	return "", fmt.Errorf("no sentinel named the master: %v", err)
}

// ClusterSet is a six-node Redis Cluster: three masters, three replicas,
// cluster-node-timeout 1000 ms.
type ClusterSet struct {
	Nodes []*Server
}

// Addrs are the nodes' addresses.
func (c *ClusterSet) Addrs() []string { return addrs(c.Nodes) }

// StartCluster starts the nodes, creates the cluster and returns once every
// node reports cluster_state:ok.
func StartCluster(t testing.TB) *ClusterSet {
	t.Helper()
	Backend(t)
	set := &ClusterSet{}
	for range 6 {
		set.Nodes = append(set.Nodes, &Server{Port: FreePort(t), args: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000"}})
	}
	startAll(t, set.Nodes...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	create := append([]string{"redis-cli", "--cluster", "create"}, set.Addrs()...)
	create = append(create, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := set.Nodes[0].Exec(ctx, create...); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	await.Check(t, 30*time.Second, 50*time.Millisecond, "cluster_state:ok on every node", func(ctx context.Context) error {
		for _, n := range set.Nodes {
			msg, err := do(ctx, n.Addr(), "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			info, err := msg.ToString()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:6") {
				return fmt.Errorf("node %d not ready", n.Port)
			}
		}
		// Every replica replicating, so CLUSTER SLOTS lists all six nodes
		// to the clients created from here on.
		msg, err := do(ctx, set.Nodes[0].Addr(), "CLUSTER", "SLOTS")
		if err != nil {
			return err
		}
		slots, err := msg.ToArray()
		if err != nil {
			return err
		}
		nodes := 0
		for _, r := range slots {
			parts, _ := r.ToArray()
			nodes += len(parts) - 2 // start, end, then one entry per node
		}
		if nodes != 6 {
			return fmt.Errorf("CLUSTER SLOTS lists %d nodes", nodes)
		}
		return nil
	})
	return set
}

// Role returns "master" or "slave" for the node, as its INFO says.
func (s *Server) Role(ctx context.Context) (string, error) {
	msg, err := do(ctx, s.Addr(), "INFO", "replication")
	if err != nil {
		return "", err
	}
	info, err := msg.ToString()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "role:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no role in INFO")
}

// do runs one command on one node with a short-lived plain connection.
func do(ctx context.Context, addr string, cmd ...string) (rueidis.RedisMessage, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true, DisableRetry: true})
	if err != nil {
		return rueidis.RedisMessage{}, err
	}
	defer c.Close()
	return c.Do(ctx, c.B().Arbitrary(cmd...).Build()).ToMessage()
}
