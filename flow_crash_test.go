//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package checkpoint

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var flowKills = flag.Int("flow.kills", 40, "SIGKILLs in TestFlowKill9; raise it for a long soak")

// The steps of internal/flowprog, in order.
var flowProgSteps = []string{"s0", "s1", "art", "s3", "use", "s5"}

const (
	flowProgPad = 96 << 10 // bytes of padding in its state: saves take a while
	flowProgArt = 2 << 20  // bytes of its raw snapshot
)

// flowProc is one run of internal/flowprog, with its reports.
type flowProc struct {
	cmd    *exec.Cmd
	events chan string // closed when the program has gone
	stderr strings.Builder
}

func startFlowProg(t *testing.T, bin string, args ...string) *flowProc {
	t.Helper()
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	p := &flowProc{cmd: exec.Command(bin, args...), events: make(chan string, 256)}
	p.cmd.ExtraFiles = []*os.File{pw}
	p.cmd.Stderr = &p.stderr
	err = p.cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		require.NoError(t, err)
	}
	go func() {
		defer close(p.events)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.events <- sc.Text()
		}
	}()
	return p
}

// TestFlowKill9 runs flows under SIGKILLs aimed at random moments, inside
// steps (after a step's start) and inside the state save (after a step's
// end, before the next start). After every kill it checks the files as they
// are, then runs the flow again, and checks that:
//   - the saved state is whole and is exactly the state after the steps the
//     file says are done (never lost, half-written or a mix);
//   - the next run starts at the first step not saved as done: no finished
//     step is redone, and a step is re-run at most once per kill;
//   - Attempts counts the killed attempts;
//   - a snapshot is visible whole or not at all, and the step that reads it
//     on a resumed run finds it intact;
//   - no temporary file survives the next open.
func TestFlowKill9(t *testing.T) {
	kills := *flowKills
	if testing.Short() {
		kills = 20
	}
	bin := buildFlowProg(t)
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	deadline := time.Now().Add(3 * time.Minute)

	var killed, inStep, inSave, tempsSeen, flows, reruns int
	for flows = 0; killed < kills; flows++ {
		require.True(t, time.Now().Before(deadline), "only %d kills in the time allowed", killed)
		name := fmt.Sprintf("flow%d", flows)
		starts := map[string]int{} // over all runs of this flow
		flowKilled := 0
		for runs := 0; ; runs++ {
			require.Less(t, runs, 200, "flow %s does not finish", name)
			before := readFlowForCrash(t, root, name)
			p := startFlowProg(t, bin, "-dir", root, "-name", name,
				"-pad", fmt.Sprint(flowProgPad), "-art", fmt.Sprint(flowProgArt))

			// Aim: 0 = let it run (once it has been killed enough); 1 = at a random time; 2 = inside a step
			// (after a start); 3 = inside the save (after an end).
			aim := 1 + rng.IntN(3)
			if runs > 30 {
				aim = 0
			}
			timer := time.NewTimer(time.Duration(rng.IntN(40_000)) * time.Microsecond)
			var seen []string
			killedHere, done := false, false
			for ev := range p.events {
				seen = append(seen, ev)
				kind, arg, _ := strings.Cut(ev, " ")
				switch kind {
				case "bad", "error":
					p.cmd.Process.Kill()
					p.cmd.Wait()
					t.Fatalf("flow %s run %d: %s\nstderr: %s", name, runs, ev, p.stderr.String())
				case "done":
					done = true
				case "start":
					starts[arg]++
				}
				hit := (aim == 2 && kind == "start") || (aim == 3 && kind == "end")
				if aim == 1 {
					select {
					case <-timer.C:
						hit = true
					default:
					}
				}
				if hit && !killedHere && rng.IntN(2) == 0 {
					time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
					p.cmd.Process.Kill()
					killedHere = true
				}
			}
			timer.Stop()
			err := p.cmd.Wait()
			if !done && !killedHere {
				t.Fatalf("flow %s run %d ended on its own without finishing: %v\nevents %v\nstderr: %s", name, runs, err, seen, p.stderr.String())
			}
			if done && killedHere {
				killedHere = false // the kill came after the end
			}

			// The first step this run started is the one the file said was
			// next; each step started once at most, in order.
			var started []string
			var lastEnd string
			for _, ev := range seen {
				if s, ok := strings.CutPrefix(ev, "start "); ok {
					started = append(started, s)
				}
				if s, ok := strings.CutPrefix(ev, "end "); ok {
					lastEnd = s
				}
			}
			if len(started) > 0 {
				i := slices.Index(flowProgSteps, started[0])
				require.Equal(t, before.next, i, "flow %s run %d started at %s, the file said step %d: a finished step redone or one skipped", name, runs, started[0], before.next)
				require.Equal(t, flowProgSteps[i:i+len(started)], started, "steps run in order, each once")
				if before.next > 0 && before.attempts(before.next) > 0 {
					reruns++
				}
			}
			after := readFlowForCrash(t, root, name)
			tempsSeen += after.temps
			if killedHere {
				killed++
				flowKilled++
				if n := len(started); n > 0 && lastEnd == started[n-1] {
					if after.next <= slices.Index(flowProgSteps, lastEnd) {
						inSave++ // the step ended but its state was not saved
					}
				} else if len(started) > 0 {
					inStep++
				}
			}
			if after.exists {
				require.GreaterOrEqual(t, after.next, before.next, "flow %s went back", name)
				// A killed step shows as running with its attempts counted
				// (one more if the kill fell between the marker and the step).
				if killedHere && after.next < len(flowProgSteps) && len(started) > 0 && started[len(started)-1] == flowProgSteps[after.next] {
					st := after.steps[after.next]
					require.Equal(t, StepRunning, st.Status, "flow %s: the killed step", name)
					n := starts[flowProgSteps[after.next]]
					require.True(t, st.Attempts >= n && st.Attempts <= n+flowKilled, "attempts %d, starts seen %d", st.Attempts, n)
				}
			}
			if done {
				require.Equal(t, len(flowProgSteps), after.next)
				for _, st := range after.steps {
					require.Equal(t, StepDone, st.Status)
					// One more than seen when a kill fell between the marker
					// and the step's first report.
					n := starts[st.Name]
					require.True(t, st.Attempts >= n && st.Attempts <= n+flowKilled, "step %s: attempts %d, starts seen %d", st.Name, st.Attempts, n)
				}
				break
			}
		}
		// The finished flow left no temporary file behind, and its
		// snapshots are whole.
		entries, err := os.ReadDir(flowSnapsDir(root, name))
		require.NoError(t, err)
		var files []string
		for _, e := range entries {
			files = append(files, e.Name())
		}
		require.ElementsMatch(t, []string{"art.raw", "art_meta.json"}, files)
		b, err := os.ReadFile(filepath.Join(flowSnapsDir(root, name), "art.raw"))
		require.NoError(t, err)
		require.Len(t, b, flowProgArt)
	}
	t.Logf("%d kills over %d flows: %d inside a step, %d inside the state save; %d runs resumed a step already tried; %d temporary files seen after a kill",
		killed, flows, inStep, inSave, reruns, tempsSeen)
	if kills >= 20 {
		require.Positive(t, inSave, "no kill landed inside a state save")
		require.Positive(t, inStep, "no kill landed inside a step")
	}
}

type crashFlowView struct {
	exists bool
	next   int
	steps  []StepStatus
	temps  int // temporary files of the flow or its snapshots
}

func (v crashFlowView) attempts(i int) int {
	if i < len(v.steps) {
		return v.steps[i].Attempts
	}
	return 0
}

// readFlowForCrash reads a flow's files as a killed run left them and checks
// that they are whole: the state is the one after the steps done, and every
// visible snapshot is complete.
func readFlowForCrash(t *testing.T, dir, name string) crashFlowView {
	t.Helper()
	var v crashFlowView
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+"_flow.json.tmp-") {
			v.temps++
		}
	}
	sdir := flowSnapsDir(dir, name)
	sentries, _ := os.ReadDir(sdir)
	for _, e := range sentries {
		switch {
		case isTempName(e.Name(), tempPrefix):
			v.temps++
		case e.Name() == "art.raw":
			b, err := os.ReadFile(filepath.Join(sdir, e.Name()))
			require.NoError(t, err)
			require.Len(t, b, flowProgArt, "a raw snapshot is visible half-written")
		case e.Name() == "art_meta.json":
			b, err := os.ReadFile(filepath.Join(sdir, e.Name()))
			require.NoError(t, err)
			var m struct{ Size int }
			require.NoError(t, json.Unmarshal(b, &m), "a JSON snapshot is visible half-written")
			require.Equal(t, flowProgArt, m.Size)
		default:
			t.Fatalf("unexpected file in the snapshots: %s", e.Name())
		}
	}
	f, err := readFlowFile(flowPath(dir, name))
	require.NoError(t, err, "the flow file is always whole")
	if f == nil {
		return v
	}
	v.exists, v.next = true, f.Next
	var s struct {
		Trail []string
		Pad   string
		Sum   string
	}
	require.NoError(t, json.Unmarshal(f.State, &s))
	require.Equal(t, flowProgSteps[:f.Next], append([]string{}, s.Trail...), "the state is the one after the steps done")
	sum := sha256.Sum256([]byte(strings.Join(s.Trail, ",") + s.Pad))
	require.Equal(t, hex.EncodeToString(sum[:]), s.Sum, "a state of two versions")
	require.Equal(t, strings.Repeat(fmt.Sprint(f.Next%10), flowProgPad), s.Pad)
	v.steps, err = ReadFlowSteps(dir, name)
	require.NoError(t, err)
	for i, st := range v.steps {
		if i < f.Next {
			require.Equal(t, StepDone, st.Status)
		}
	}
	return v
}

func buildFlowProg(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "flowprog")
	out, err := exec.Command(goTool, "build", "-buildvcs=false", "-o", bin, "./internal/flowprog").CombinedOutput()
	require.NoError(t, err, "build the flow program: %s", out)
	return bin
}
