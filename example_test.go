package redisadapter_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio"

	"github.com/blogstack/redisadapter"
)

// A go-socket.io server whose room broadcasts reach every node of the fleet.
func ExampleNew() {
	server := socketio.NewServer(&engineio.Options{
		SessionIDGenerator: redisadapter.SessionIDGenerator{}, // unique ids across nodes
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := redisadapter.New(ctx, server, redisadapter.Standalone{Addr: "127.0.0.1:6379"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { // at shutdown: what is queued is sent, for up to 5 s
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			log.Print(err)
		}
	}()

	// Connect handlers are registered on the adapter: the server keeps one
	// per namespace, and the adapter has it.
	a.Of("/").OnConnect(func(s socketio.Conn) error {
		return a.SetData(s, map[string]string{"user": s.RemoteHeader().Get("X-User")})
	})
	server.OnEvent("/", "join", func(s socketio.Conn, post string) {
		s.Join("post:" + post)
	})
	server.OnEvent("/", "comment", func(s socketio.Conn, post, text string) {
		// Every reader of the post, on every node.
		if err := a.To("post:"+post).Emit(context.Background(), "comment", text); err != nil {
			log.Print(err)
		}
	})
	go server.Serve()
	log.Fatal(http.ListenAndServe(":3000", server))
}

// Requests to the other nodes: how many readers a post has fleet-wide.
func ExampleBroadcastOperator_CountSockets() {
	var a *redisadapter.Adapter // from New
	ctx := context.Background()

	readers, err := a.To("post:42").CountSockets(ctx)
	if err != nil {
		log.Print(err) // some node did not answer in time: readers counts the others
	}
	fmt.Println(readers)
}

// Classic pub/sub with one SUBSCRIBE per room a node holds, and a join
// that returns once the node receives the room's broadcasts: a comment
// posted after the client's "join" is acknowledged reaches it.
func ExampleAdapter_Join() {
	server := socketio.NewServer(&engineio.Options{SessionIDGenerator: redisadapter.SessionIDGenerator{}})
	ctx := context.Background()
	a, err := redisadapter.New(ctx, server, redisadapter.Standalone{Addr: "127.0.0.1:6379", RoomSubscriptions: true}, nil)
	if err != nil {
		log.Fatal(err)
	}
	server.OnEvent("/", "join", func(s socketio.Conn, post string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Join(ctx, s, "post:"+post); err != nil {
			log.Print(err) // joined; the room's channel is subscribed once Redis is back
		}
		return "ok"
	})
}

// A server-to-server event with acknowledgements, to the servers of a
// namespace. It is a Namespace's: a selection of sockets (a.To, Except,
// Local) has no ServerSideEmit, since servers are not in rooms.
func ExampleNamespace_ServerSideEmit() {
	var a *redisadapter.Adapter // from New
	ctx := context.Background()

	a.Of("/").OnServerSideEmit("cache:flush", func(args []json.RawMessage) any { return "flushed" })
	acks, err := a.Of("/").ServerSideEmit(ctx, "cache:flush", "post:42")
	fmt.Println(len(acks), err)
}

// A job worker with no sockets reaches the fleet's clients. Emit returns
// once the message is queued; Close sends what is queued and reports
// whether Redis took it.
func ExampleNewEmitter() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := redisadapter.NewEmitter(ctx, redisadapter.Standalone{Addr: "127.0.0.1:6379"}, nil)
	if errors.Is(err, redisadapter.ErrUnavailable) {
		log.Fatal("redis is down: ", err)
	}
	if err != nil {
		log.Fatal(err)
	}
	err = e.Of("/admin").To("post:42").Emit(ctx, "comment", map[string]string{"text": "hello"})
	log.Print(errors.Join(err, e.Close(ctx)))
}

func ExampleParseURL() {
	c, err := redisadapter.ParseURL("rediss://app:s3cret@redis.internal:6380/2?dial_timeout=2s")
	s := c.(redisadapter.Standalone)
	fmt.Println(s.Addr, s.Username, s.DB, s.DialTimeout, s.TLSConfig.ServerName, err)

	_, err = redisadapter.ParseURL("redis://localhost:6379?dialtimeout=2s")
	fmt.Println(err)
	// Output:
	// redis.internal:6380 app 2 2s redis.internal <nil>
	// redisadapter: invalid configuration: redis URL query key "dialtimeout" is not supported
}

// A producer that pushes updates one after another: each Emit returns once
// its message is queued, and the queue leaves in pipelines. Flush waits for
// Redis and says whether something queued did not get there.
func ExampleAdapter_Flush() {
	var a *redisadapter.Adapter // from New
	ctx := context.Background()

	for i := range 1000 {
		if err := a.To("post:42").Emit(ctx, "views", i); err != nil {
			log.Print(err) // Redis unreachable, or the queue stayed full
			return
		}
	}
	if err := a.Flush(ctx); err != nil {
		log.Print(err) // some of the 1000 did not reach the other nodes
	}
}

// Emit to every reader of a post, on every node, and collect each
// client's acknowledgement: here, confirming that a forced logout reached
// every open tab of a user. Each tab answers with its callback
// (socket.on("logout", (reason, ack) => { ack("bye"); ... }) in the
// browser).
func ExampleBroadcastOperator_EmitWithAck() {
	var a *redisadapter.Adapter // from New
	ctx := context.Background()

	acks, err := a.To("user:42").Timeout(2*time.Second).EmitWithAck(ctx, "logout", "password changed")
	switch {
	case errors.Is(err, redisadapter.ErrTimeout):
		// acks holds the answers that came in time; err says how many
		// tabs (and nodes) did not answer.
		log.Printf("%d tabs confirmed; %v", len(acks), err)
	case err != nil:
		log.Print(err) // not sent: Redis unavailable, or closed
	default:
		log.Printf("all %d tabs confirmed", len(acks))
	}
	for _, ack := range acks {
		var answer string
		_ = json.Unmarshal(ack, &answer) // each ack is the client's first callback argument, as JSON
	}
}
