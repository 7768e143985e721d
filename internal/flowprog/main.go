// Command flowprog is a small flow built on the checkpoint library, run and
// killed with SIGKILL at random moments by flow_crash_test.go in the module
// root. It is not meant for people.
//
// It reports on file descriptor 3, one line per event, each in one write:
//
//	start <step> | end <step> | done | bad <text> | error <text>
//
// "start" is the first thing a step does and "end" the last, before Run
// saves the state. The test trusts nothing but these reports and the files.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// State is the flow's state. Pad makes it large, so that a kill often lands
// while it is saved; Sum ties Pad to Trail, so a state saved half-written
// or from two versions shows.
type State struct {
	Trail []string `json:"trail"`
	Pad   string   `json:"pad"`
	Sum   string   `json:"sum"`
}

// StepNames are the steps, in order; "art" saves a large raw snapshot and a
// JSON one, "use" (two steps later) reads them back.
var StepNames = []string{"s0", "s1", "art", "s3", "use", "s5"}

// Expect returns the state after the first n steps.
func Expect(n, pad int) State {
	s := State{Trail: append([]string{}, StepNames[:n]...)}
	s.Pad = strings.Repeat(fmt.Sprintf("%d", n%10), pad)
	sum := sha256.Sum256([]byte(strings.Join(s.Trail, ",") + s.Pad))
	s.Sum = hex.EncodeToString(sum[:])
	return s
}

// Art is the content of the raw snapshot: size bytes depending on nothing
// but size.
func Art(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + i>>10)
	}
	return b
}

type artMeta struct {
	Size int    `json:"size"`
	Sum  string `json:"sum"`
}

func main() {
	dir := flag.String("dir", "", "checkpoint folder")
	name := flag.String("name", "flow", "flow name")
	pad := flag.Int("pad", 256<<10, "bytes of padding in the state")
	art := flag.Int("art", 8<<20, "bytes of the raw snapshot")
	flag.Parse()
	rep := os.NewFile(3, "report")
	report := func(format string, a ...any) {
		rep.Write([]byte(fmt.Sprintf(format, a...) + "\n"))
	}
	f, err := checkpoint.NewFlow[State](*name, checkpoint.WithDir(*dir),
		checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		report("error %v", err)
		os.Exit(1)
	}
	snaps := f.Snapshots()
	for i, step := range StepNames {
		f.Step(step, func(ctx context.Context, s *State) error {
			report("start %s", step)
			if want := Expect(i, *pad); s.Sum != want.Sum || s.Pad != want.Pad || strings.Join(s.Trail, ",") != strings.Join(want.Trail, ",") {
				report("bad step %s got a state of trail %v", step, s.Trail)
			}
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // work
			switch step {
			case "art":
				b := Art(*art)
				w, err := snaps.Create("art")
				if err != nil {
					return err
				}
				defer w.Abort()
				for off := 0; off < len(b); off += 1 << 20 {
					if _, err := w.Write(b[off:min(off+1<<20, len(b))]); err != nil {
						return err
					}
				}
				if err := w.Close(); err != nil {
					return err
				}
				sum := sha256.Sum256(b)
				if err := snaps.Save("art_meta", artMeta{len(b), hex.EncodeToString(sum[:])}); err != nil {
					return err
				}
			case "use":
				var m artMeta
				found, err := snaps.Load("art_meta", &m)
				if err != nil || !found {
					report("bad art_meta missing in step use: %v %v", found, err)
					return fmt.Errorf("no art_meta")
				}
				r, err := snaps.Open("art")
				if err != nil {
					report("bad art missing in step use: %v", err)
					return err
				}
				b, err := io.ReadAll(r)
				r.Close()
				sum := sha256.Sum256(b)
				if err != nil || m.Size != len(b) || m.Sum != hex.EncodeToString(sum[:]) || !bytes.Equal(b, Art(*art)) {
					report("bad art of %d bytes does not match its meta (%d bytes): %v", len(b), m.Size, err)
				}
			}
			*s = Expect(i+1, *pad)
			report("end %s", step)
			return nil
		})
	}
	final, err := f.Run(context.Background(), Expect(0, *pad))
	if err != nil {
		report("error %v", err)
		os.Exit(1)
	}
	if final.Sum != Expect(len(StepNames), *pad).Sum {
		report("bad final state of trail %v", final.Trail)
	}
	report("done")
}
