package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	socketio "github.com/googollee/go-socket.io"

	"github.com/blogstack/redisadapter"
)

const (
	nsp           = "/"             // the namespace of every event
	opTimeout     = 3 * time.Second // each call that reaches the other nodes: a count, a list, an emit
	maxCommentLen = 2000            // characters

	ackOK           = "ok"
	ackNotDelivered = "error: comment not delivered to every node"
)

// postRoom holds the readers of a post.
func postRoom(post string) string { return "post:" + post }

// blog holds the Socket.IO handlers: this file's, and those of receipts.go
// and fleet.go.
type blog struct {
	a      *redisadapter.Adapter
	node   string
	log    *slog.Logger
	ctx    context.Context // ends at shutdown
	limits *readerLimits

	fleetRefresh *coalescer           // pushes "fleet:update", by post
	receiptQ     *keyedQueue[comment] // delivers receipted comments, by author socket id

	mu    sync.Mutex
	posts map[string]map[string]bool // socket id -> posts it reads, to update counts on disconnect
}

func newBlog(ctx context.Context, a *redisadapter.Adapter, node string, limits *readerLimits, log *slog.Logger) *blog {
	b := &blog{a: a, node: node, log: log, ctx: ctx, limits: limits, posts: make(map[string]map[string]bool)}
	b.fleetRefresh = newCoalescer(b.pushFleet)
	// Every receipted comment waiting is delivered, even at shutdown: its
	// author was told "ok".
	b.receiptQ = newKeyedQueue(maxWaitingReceipts, true, b.deliverWithReceipt)
	return b
}

// drain stops new receipt and fleet goroutines and waits for those under
// way, until ctx ends; they end with b.ctx.
func (b *blog) drain(ctx context.Context) error {
	b.receiptQ.stop()
	b.fleetRefresh.stop()
	if err := b.fleetRefresh.wait(ctx); err != nil {
		return fmt.Errorf("fleet updates still running: %w", err)
	}
	if err := b.receiptQ.wait(ctx); err != nil {
		return fmt.Errorf("comments with receipts still being delivered: %w", err)
	}
	return nil
}

func (b *blog) register(server *socketio.Server) {
	server.OnEvent(nsp, "join", b.join)
	server.OnEvent(nsp, "leave", b.leave)
	server.OnEvent(nsp, "comment", b.comment)
	server.OnEvent(nsp, "readers", b.readers)
	server.OnEvent(nsp, "receipts", b.receipts) // receipts.go
	server.OnEvent(nsp, "fleet", b.fleet)       // fleet.go
	b.a.Of(nsp).OnConnect(b.connect)
	b.a.Of(nsp).OnDisconnect(b.disconnect)
}

// admit takes one event of s past the connection's rate limit and parses
// its argument v: it returns what parse made of it, or else the error ack
// to send. Every event handler starts with it.
func admit[T any](b *blog, s socketio.Conn, v any, parse func(any) (T, error)) (T, string) {
	var zero T
	if e := b.limits.event(s.ID()); e != "" {
		return zero, e
	}
	x, err := parse(v)
	if err != nil {
		return zero, err.Error()
	}
	return x, ""
}

// postID accepts a post id as a string or a number.
func postID(v any) (string, error) {
	var id string
	switch v := v.(type) {
	case string:
		id = strings.TrimSpace(v)
	case float64:
		id = fmt.Sprint(v)
	}
	if id == "" || len(id) > 64 {
		return "", errors.New("error: post id must be a non-empty string of at most 64 characters")
	}
	return id, nil
}

func (b *blog) connect(s socketio.Conn) error {
	b.limits.connected(s.ID())
	// Other nodes see which node holds this socket through FetchSockets.
	return b.a.SetData(s, socketData{Node: b.node})
}

func (b *blog) disconnect(s socketio.Conn, _ string) {
	b.limits.disconnected(s.ID())
	b.mu.Lock()
	posts := b.posts[s.ID()]
	delete(b.posts, s.ID())
	b.mu.Unlock()
	for id := range posts {
		b.pushReaders(id)
	}
}

func (b *blog) join(s socketio.Conn, v any) any {
	id, e := admit(b, s, v, postID)
	if e != "" {
		return e
	}
	b.mu.Lock()
	posts := b.posts[s.ID()]
	if !posts[id] {
		if e := b.limits.join(len(posts)); e != "" {
			b.mu.Unlock()
			return e
		}
	}
	if posts == nil {
		posts = make(map[string]bool)
		b.posts[s.ID()] = posts
	}
	posts[id] = true
	b.mu.Unlock()
	// a.Join, not s.Join: it returns once this node receives the room's
	// broadcasts (in the modes that subscribe per room), so the reader
	// misses no comment posted after its join is acknowledged.
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := b.a.Join(ctx, s, postRoom(id)); err != nil {
		b.log.Warn("joined, but the post's channel is not subscribed yet", "post", id, "err", err)
	}
	return b.pushReaders(id)
}

func (b *blog) leave(s socketio.Conn, v any) any {
	id, e := admit(b, s, v, postID)
	if e != "" {
		return e
	}
	_ = b.a.Leave(b.ctx, s, postRoom(id), receiptsRoom(id)) // fails only for a namespace not served
	b.mu.Lock()
	delete(b.posts[s.ID()], id)
	b.mu.Unlock()
	b.pushReaders(id)
	return ackOK
}

func (b *blog) readers(s socketio.Conn, v any) any {
	id, e := admit(b, s, v, postID)
	if e != "" {
		return e
	}
	return b.count(id)
}

// count is the number of readers of a post on every node; when a node does
// not answer in time, the others' count.
func (b *blog) count(id string) int {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	n, err := b.a.To(postRoom(id)).CountSockets(ctx)
	if err != nil {
		b.log.Warn("reader count incomplete", "post", id, "err", err)
	}
	return n
}

// pushReaders tells the post's readers how many they are, and returns it;
// their count per node follows, from b.fleetRefresh. The count stays on
// CountSockets: FetchSockets lists every socket (O(readers) over Redis) and
// loses a node whose list exceeds MaxMessageSize.
func (b *blog) pushReaders(id string) int {
	n := b.count(id)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := b.a.To(postRoom(id)).Emit(ctx, "readers:update", map[string]any{"post": id, "count": n}); err != nil {
		b.log.Warn("readers update not sent to other nodes", "post", id, "err", err)
	}
	// Off the handler goroutine, coalesced per post: a FetchSockets per
	// change would cost O(readers) over Redis each.
	b.fleetRefresh.trigger(id)
	return n
}

type comment struct {
	Post string `json:"post"`
	Text string `json:"text"`
	Node string `json:"node"`
}

// parseComment accepts {post, text}; Node is left to the handler.
func parseComment(v any) (comment, error) {
	m, _ := v.(map[string]any)
	if m == nil {
		return comment{}, errors.New("error: a comment is an object {post, text}")
	}
	id, err := postID(m["post"])
	if err != nil {
		return comment{}, err
	}
	text, _ := m["text"].(string)
	text = strings.TrimSpace(text)
	switch {
	case text == "":
		return comment{}, errors.New("error: empty comment")
	case len([]rune(text)) > maxCommentLen:
		return comment{}, fmt.Errorf("error: comment longer than %d characters", maxCommentLen)
	}
	return comment{Post: id, Text: text}, nil
}

func (b *blog) comment(s socketio.Conn, v any) string {
	c, e := admit(b, s, v, parseComment)
	if e != "" {
		return e
	}
	c.Node = b.node
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	readers := b.a.To(postRoom(c.Post))
	// An author who asked for receipts: readers who did too get the comment
	// with an acknowledgement request, from b.receiptQ; the others as before.
	wantsReceipt := slices.Contains(s.Rooms(), receiptsRoom(c.Post))
	if wantsReceipt {
		readers = readers.Except(receiptsRoom(c.Post))
	}
	if err := b.emitComment(ctx, readers, c); err != nil {
		return ackNotDelivered
	}
	// Not waited for here: go-socket.io reads the author's own
	// acknowledgement on the goroutine running this handler.
	if wantsReceipt && !b.receiptQ.push(s.ID(), c) {
		// Too many waiting, or shutting down: sent plainly, no receipt.
		if err := b.emitComment(ctx, b.a.To(receiptsRoom(c.Post)), c); err != nil {
			return ackNotDelivered
		}
	}
	return ackOK
}

// emitComment sends c to the sockets to selects, on every node.
func (b *blog) emitComment(ctx context.Context, to redisadapter.BroadcastOperator, c comment) error {
	err := to.Emit(ctx, "comment", c)
	if err != nil {
		b.log.Error("comment not sent to other nodes", "post", c.Post, "err", err)
	}
	return err
}
