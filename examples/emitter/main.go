// Command emitter posts a comment to every reader of a BlogStack post, from
// the command line, without running a Socket.IO server: the readers get the
// same "comment" event as from the blogstack example, whichever node they
// are on. It also asks the fleet what a node would: how many sockets, and
// which, are in a room, which rooms exist, how many servers there are, and
// the readers' acknowledgements of a comment.
//
//	REDIS_URL=redis://127.0.0.1:6379 go run ./examples/emitter -post 42 -text "Comments are back"
//	go run ./examples/emitter -post 42 -text "Still there?" -ack    # prints each reader's ack
//	go run ./examples/emitter -count post:42                        # readers of post 42, fleet-wide
//	go run ./examples/emitter -fetch post:42                        # one JSON line per socket
//	go run ./examples/emitter -rooms                                # every room, one a line
//	go run ./examples/emitter -servers                              # how many servers
//
// A server or client that does not answer in time (-timeout) leaves the
// answers that arrived printed and the command failing with the timeout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/blogstack/redisadapter"
)

// command is what the flags ask for.
type command struct {
	post, text, from string
	ack              bool
	count, fetch     string
	rooms, servers   bool
	timeout          time.Duration
}

func main() {
	var c command
	flag.StringVar(&c.post, "post", "", "post id: with -text, post a comment to its readers")
	flag.StringVar(&c.text, "text", "", "comment text")
	flag.StringVar(&c.from, "node", "emitter", "the node name shown with the comment")
	flag.BoolVar(&c.ack, "ack", false, "with -post and -text: wait for the readers' acknowledgements and print them")
	flag.StringVar(&c.count, "count", "", "print how many sockets are in this room, fleet-wide")
	flag.StringVar(&c.fetch, "fetch", "", "print the sockets in this room, one JSON object a line")
	flag.BoolVar(&c.rooms, "rooms", false, "print every room of the namespace, one a line")
	flag.BoolVar(&c.servers, "servers", false, "print how many servers serve the namespace")
	flag.DurationVar(&c.timeout, "timeout", 5*time.Second, "how long to wait for answers")
	flag.Parse()
	asks := 0
	for _, set := range []bool{c.post != "" || c.text != "", c.count != "", c.fetch != "", c.rooms, c.servers} {
		if set {
			asks++
		}
	}
	if asks != 1 || (c.post != "" || c.text != "") && (c.post == "" || c.text == "") || c.ack && c.post == "" {
		fmt.Fprintln(os.Stderr, "usage: emitter -post <id> -text <comment> [-ack] | -count <room> | -fetch <room> | -rooms | -servers  [-timeout 5s]  (Redis from REDIS_URL, REDIS_PASSWORD...)")
		os.Exit(2)
	}
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "emitter:", err)
		os.Exit(1)
	}
}

func run(c command, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout+5*time.Second)
	defer cancel()
	conn, err := redisadapter.FromEnv()
	if err != nil {
		return err
	}
	e, err := redisadapter.NewEmitter(ctx, conn, &redisadapter.Options{RequestTimeout: c.timeout})
	if err != nil {
		return err
	}
	err = ask(ctx, e, c, out)
	// Emit returns once the message is queued: Close sends it, and says
	// whether Redis took it.
	return errors.Join(err, e.Close(ctx))
}

// ask does what c says and prints the answers; with a timeout, those that
// arrived are printed before the error is returned.
func ask(ctx context.Context, e redisadapter.Emitter, c command, out io.Writer) error {
	switch {
	case c.count != "":
		n, err := e.To(c.count).CountSockets(ctx)
		fmt.Fprintln(out, n)
		return err
	case c.fetch != "":
		sockets, err := e.To(c.fetch).FetchSockets(ctx)
		enc := json.NewEncoder(out)
		for _, s := range sockets {
			if err := enc.Encode(map[string]any{"id": s.ID, "node": s.Node, "rooms": s.Rooms, "data": s.Data, "address": s.Handshake.Address}); err != nil {
				return err
			}
		}
		return err
	case c.rooms:
		rooms, err := e.AllRooms(ctx)
		for _, r := range rooms {
			fmt.Fprintln(out, r)
		}
		return err
	case c.servers:
		n, err := e.ServerCount(ctx)
		if err == nil {
			fmt.Fprintln(out, n)
		}
		return err
	}
	comment := map[string]string{"post": c.post, "text": c.text, "node": c.from}
	if !c.ack {
		return e.To("post:"+c.post).Emit(ctx, "comment", comment)
	}
	acks, err := e.To("post:"+c.post).Timeout(c.timeout).EmitWithAck(ctx, "comment", comment)
	for _, a := range acks {
		fmt.Fprintln(out, string(a))
	}
	return err
}
