// Command emitter posts a comment to every reader of a BlogStack post, from
// the command line, without running a Socket.IO server: the readers get the
// same "comment" event as from the blogstack example, whichever node they
// are on.
//
//	REDIS_URL=redis://127.0.0.1:6379 go run ./examples/emitter -post 42 -text "Comments are back"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/blogstack/redisadapter"
)

func main() {
	post := flag.String("post", "", "post id (required)")
	text := flag.String("text", "", "comment text (required)")
	from := flag.String("node", "emitter", "the node name shown with the comment")
	flag.Parse()
	if *post == "" || *text == "" {
		fmt.Fprintln(os.Stderr, "usage: emitter -post <id> -text <comment>  (Redis from REDIS_URL, REDIS_PASSWORD)")
		os.Exit(2)
	}
	if err := run(*post, *text, *from); err != nil {
		fmt.Fprintln(os.Stderr, "emitter:", err)
		os.Exit(1)
	}
}

func run(post, text, from string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := redisadapter.FromEnv()
	if err != nil {
		return err
	}
	e, err := redisadapter.NewEmitter(ctx, c, nil)
	if err != nil {
		return err
	}
	err = e.To("post:"+post).Emit(ctx, "comment", map[string]string{"post": post, "text": text, "node": from})
	// Emit returns once the message is queued: Close sends it, and says
	// whether Redis took it.
	return errors.Join(err, e.Close(ctx))
}
