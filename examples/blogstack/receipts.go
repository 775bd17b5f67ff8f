package main

// Delivery receipts: readers of a post who sent "receipts" get the
// receipted comments of its authors with an acknowledgement request; the
// author learns how many confirmed. The comment handler (handlers.go)
// queues them on blog.receiptQ, one queue per author.

import (
	"context"
	"errors"
	"time"

	socketio "github.com/googollee/go-socket.io"

	"github.com/blogstack/redisadapter"
)

const (
	// maxWaitingReceipts bounds an author's receipted comments waiting for
	// their turn; past it they go out plainly, possibly ahead of waiting ones.
	maxWaitingReceipts = 32
	receiptTimeout     = 3 * time.Second // how long readers have to confirm a comment
	receiptBudget      = 5 * time.Second // one delivery, the receipt to its author included
)

// receiptsRoom holds the readers of a post who asked for delivery receipts.
func receiptsRoom(post string) string { return "receipts:" + post }

func (b *blog) receipts(s socketio.Conn, v any) string {
	id, e := admit(b, s, v, postID)
	if e != "" {
		return e
	}
	// Only for a post the connection reads: -max-posts bounds these rooms too.
	b.mu.Lock()
	reading := b.posts[s.ID()][id]
	b.mu.Unlock()
	if !reading {
		return "error: join the post first"
	}
	s.Join(receiptsRoom(id))
	return ackOK
}

// deliverWithReceipt sends c to the readers of its post who asked for
// receipts, on every node, and tells its author how many confirmed.
func (b *blog) deliverWithReceipt(author string, c comment) {
	ctx, cancel := context.WithTimeout(b.ctx, receiptBudget)
	defer cancel()
	acks, err := b.a.To(receiptsRoom(c.Post)).Timeout(receiptTimeout).EmitWithAck(ctx, "comment", c)
	receipt := map[string]any{"post": c.Post, "text": c.Text, "delivered": len(acks), "complete": err == nil}
	if err != nil && !errors.Is(err, redisadapter.ErrTimeout) {
		b.log.Warn("comment with receipts not sent", "post", c.Post, "err", err)
		receipt["error"] = err.Error() // the author learns why, not only "incomplete"
	}
	if err := b.a.To(author).Emit(ctx, "comment:receipt", receipt); err != nil {
		b.log.Warn("receipt not sent", "post", c.Post, "err", err)
	}
}
