package redisadapter

// Stream entries (streams mode) are sent until Redis has them: the sender
// numbers each one (streams.publish puts the number in the entry) and sends
// again those whose XADD failed in a way that may have left them out;
// readers drop a second copy (streamReader.duplicate).

import (
	"strings"

	"github.com/redis/rueidis"
)

// resend sends the durable messages of a batch whose first try may have
// left them out of Redis again, in order, until Redis has them, refuses
// them for good, or the publisher is aborted (Close gave up waiting); their
// last results replace the failures. Meanwhile a pub/sub publish waits
// for its answer (p.down), stream entries join the queue, which waits
// behind: order is kept. A message whose waiter gave up is not sent again.
func (p *publisher) resend(sent []*outgoing, results []rueidis.RedisResult) {
	b := backoff{min: minBackoff, max: maxBackoff}
	for {
		var idx []int
		var cmds []rueidis.Completed
		i := 0
		for _, o := range sent {
			if o.flush {
				continue
			}
			if o.msg.durable && mayResend(results[i].Error()) && (o.w == nil || o.w.state.Load() == taken) {
				idx = append(idx, i)
				cmds = append(cmds, o.cmd)
			}
			i++
		}
		if len(idx) == 0 || p.ctx.Err() != nil {
			return // nothing to resend, or aborted: the client is closing
		}
		p.mu.Lock()
		p.down = true
		p.mu.Unlock()
		p.logResend(results[idx[0]].Error(), len(cmds))
		if !b.wait(p.ctx) {
			return
		}
		p.resent.Add(uint64(len(cmds)))
		for k, r := range p.do(cmds) {
			results[idx[k]] = r
		}
	}
}

// mayResend reports whether a failed command may not have reached Redis
// and may succeed if sent again: the connection broke or timed out, or
// Redis was briefly unable to take a write (loading its data, a replica
// until the failover, a cluster reconfiguring, a script running, too few
// replicas for min-replicas-to-write), or the connection was closed before
// the command went out (ErrClosing: a Sentinel client closes the old
// master's connections when it moves to the new one; when the adapter
// closes the client, the publisher is aborted first and resends nothing).
// A stream entry is a single write: an error reply means Redis did not add
// it.
func mayResend(err error) bool {
	if err == nil {
		return false
	}
	re, answered := rueidis.IsRedisErr(err)
	if !answered {
		return true
	}
	for _, transient := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS"} {
		if strings.HasPrefix(re.Error(), transient) {
			return true
		}
	}
	return false
}
