package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/stretchr/testify/require"
)

// makeFlow runs a two-step flow "train" in dir: "load" succeeds, "fit" fails.
func makeFlow(t *testing.T, dir string) {
	t.Helper()
	type state struct{ N int }
	f, err := checkpoint.NewFlow[state]("train", checkpoint.WithDir(dir))
	require.NoError(t, err)
	f.Step("load", func(ctx context.Context, s *state) error { s.N = 1; return nil })
	f.Step("fit", func(ctx context.Context, s *state) error { return errors.New("out of memory") })
	_, err = f.Run(context.Background(), state{})
	require.Error(t, err)
	require.NoError(t, f.Close())
}

func TestStatusShowsFlowSteps(t *testing.T) {
	dir := t.TempDir()
	makeFlow(t, dir)

	code, out, errOut := runCmd(t, "status", "train", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "flow train")
	require.Regexp(t, `load\s+done\s+1`, out)
	require.Regexp(t, `fit\s+failed\s+1`, out)
	require.Contains(t, out, "out of memory")

	code, out, errOut = runCmd(t, "status", "train", "--dir", dir, "--json")
	require.Equal(t, 0, code, errOut)
	var got struct {
		Name  string                  `json:"name"`
		Kind  string                  `json:"kind"`
		Steps []checkpoint.StepStatus `json:"steps"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Equal(t, "flow", got.Kind)
	require.Len(t, got.Steps, 2)
	require.Equal(t, "load", got.Steps[0].Name)
	require.Equal(t, checkpoint.StepDone, got.Steps[0].Status)
	require.Equal(t, checkpoint.StepFailed, got.Steps[1].Status)

	code, _, errOut = runCmd(t, "status", "nosuch", "--dir", dir)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no checkpoint")
}

func TestLsListsFlows(t *testing.T) {
	dir := sampleDir(t)
	makeFlow(t, dir)
	code, out, errOut := runCmd(t, "ls", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		kinds = append(kinds, f[0]+" "+f[1])
	}
	require.Equal(t, []string{"sample checkpoint", "train flow"}, kinds)
}

// TestHelperDieInFlight is the child of TestStatusShowsInFlight: it processes
// key 7 of the checkpoint "job" and kills itself (SIGKILL on Unix) inside
// the call, so key 7 stays in flight.
func TestHelperDieInFlight(t *testing.T) {
	dir := os.Getenv("CHECKPOINT_DIE_DIR")
	if dir == "" {
		t.Skip("only run as the child of TestStatusShowsInFlight")
	}
	r, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir), checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		os.Exit(3)
	}
	r.Process(context.Background(), slices.Values([]int{7}), func(i int) int { return i },
		func(context.Context, int) (any, error) {
			p, _ := os.FindProcess(os.Getpid())
			p.Kill()
			time.Sleep(time.Minute)
			return nil, nil
		}, checkpoint.WithWorkers(1))
	os.Exit(4) // not reached: the kill came first
}

func TestStatusShowsInFlight(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDieInFlight$")
	cmd.Env = append(os.Environ(), "CHECKPOINT_DIE_DIR="+dir)
	err := cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.False(t, ee.Exited(), "the child exited (code %d) instead of being killed", ee.ExitCode())

	// Right after the crash: key 7 is in flight, no crash counted yet.
	code, out, errOut := runCmd(t, "status", "job", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "in flight    1 keys when the last run died (no run since): 7")
	code, out, errOut = runCmd(t, "status", "job", "--dir", dir, "--json")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"in_flight":[7]`)

	// The next Open counts the crash.
	r, err := checkpoint.Open[int, int]("job", checkpoint.WithDir(dir), checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	require.NoError(t, r.Close())
	code, out, errOut = runCmd(t, "status", "job", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "crashed      key 7: 1 crash")
	code, out, errOut = runCmd(t, "status", "job", "--dir", dir, "--json")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"crashes":[{"key":7,"crashes":1,"gave_up":false}]`)
}
