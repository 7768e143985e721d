// Command editprog runs one of the checkpoint library's changing functions
// (Compact, Retry, Forget, Reset) once, for the crash test that kills it with
// SIGKILL at random moments (edit_crash_test.go in the module root). It is
// not meant for people.
//
// It prints "start" on standard output right before the call and "done"
// after it returned.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/checkpoint-go/checkpoint"
)

func main() {
	dir := flag.String("dir", "", "checkpoint folder")
	name := flag.String("name", "job", "checkpoint name")
	op := flag.String("op", "compact", "compact, retry, forget or reset")
	keys := flag.String("keys", "", "comma-separated keys for forget")
	flag.Parse()
	fmt.Println("start")
	var err error
	switch *op {
	case "compact":
		_, _, err = checkpoint.Compact(*dir, *name)
	case "retry":
		_, err = checkpoint.Retry(*dir, *name, func(checkpoint.Failure[string]) bool { return true })
	case "forget":
		_, err = checkpoint.Forget(*dir, *name, strings.Split(*keys, ",")...)
	case "reset":
		_, err = checkpoint.Reset(*dir, *name, true)
	default:
		err = fmt.Errorf("unknown op %q", *op)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("done")
}
