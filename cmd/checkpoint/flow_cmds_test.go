package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/checkpoint-go/checkpoint"
	"github.com/stretchr/testify/require"
)

// TestHelperHoldFlow is the child of the tests below: it opens the flow
// "train" (which takes its lock), says so and holds it until its stdin
// closes.
func TestHelperHoldFlow(t *testing.T) {
	dir := os.Getenv("CHECKPOINT_HOLD_FLOW_DIR")
	if dir == "" {
		t.Skip("only run as the child of TestLsMarksRunningFlow and TestResetFlowOnly")
	}
	f, err := checkpoint.NewFlow[struct{ N int }]("train", checkpoint.WithDir(dir))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("holding")
	io.Copy(io.Discard, os.Stdin)
	f.Close()
	os.Exit(0)
}

// holdFlow starts a second process that holds the flow "train" in dir open,
// and returns a function that ends it.
func holdFlow(t *testing.T, dir string) (release func()) {
	t.Helper()
	return holdInChild(t, "TestHelperHoldFlow", "CHECKPOINT_HOLD_FLOW_DIR", dir)
}

// holdInChild re-runs this test binary as a second process running only
// the helper test named, with env=dir, waits until it says "holding", and
// returns a function that closes its stdin (its signal to let go) and waits
// for it. Cleanup calls release too.
func holdInChild(t *testing.T, helper, env, dir string) (release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+helper+"$")
	cmd.Env = append(os.Environ(), env+"="+dir)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	done := false
	release = func() {
		if !done {
			done = true
			stdin.Close()
			cmd.Wait()
		}
	}
	t.Cleanup(release)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "holding\n", line)
	return release
}

type lsJSONRow struct {
	Name              string `json:"name"`
	Kind              string `json:"kind"`
	Running           bool   `json:"running"`
	Completed, Failed int
	Size              int64
}

// lsRows runs ls --json and returns its rows by name.
func lsRows(t *testing.T, dir string) map[string]lsJSONRow {
	t.Helper()
	code, out, errOut := runCmd(t, "ls", "--json", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	rows := map[string]lsJSONRow{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r lsJSONRow
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)
		rows[r.Name] = r
	}
	return rows
}

// A flow holds its name's lock while it is open: ls shows it running then,
// and not once it is closed, in the table and in --json.
func TestLsMarksRunningFlow(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ls shows flows running where the kernel lists locks (Linux); elsewhere it never probes a flow's lock")
	}
	dir := sampleDir(t)
	makeFlow(t, dir)
	rows := lsRows(t, dir)
	require.Equal(t, "flow", rows["train"].Kind)
	require.False(t, rows["train"].Running, "a closed flow shown running")

	release := holdFlow(t, dir)
	rows = lsRows(t, dir)
	require.True(t, rows["train"].Running, "an open flow not shown running")
	require.False(t, rows["sample"].Running, "the checkpoint beside it shown running")
	code, out, errOut := runCmd(t, "ls", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `(?m)^train\s+flow\s.*\srunning\s`, out)

	release()
	require.False(t, lsRows(t, dir)["train"].Running, "a flow shown running after it closed")
}

// reset of a name that is only a flow moves (or deletes) the flow's files,
// and refuses while the flow is open.
func TestResetFlowOnly(t *testing.T) {
	for _, backup := range []bool{true, false} {
		t.Run(map[bool]string{true: "backup", false: "no-backup"}[backup], func(t *testing.T) {
			dir := t.TempDir()
			makeFlow(t, dir)
			flowFile := filepath.Join(dir, "train_flow.json")
			require.FileExists(t, flowFile)

			release := holdFlow(t, dir)
			before := snapshot(t, dir)
			code, out, errOut := runCmd(t, "reset", "train", "--dir", dir)
			require.Equal(t, 1, code, out)
			require.Contains(t, errOut, "held by a running job")
			require.Equal(t, before, snapshot(t, dir), "a refused reset changed files")
			release()

			args := []string{"reset", "train", "--dir", dir}
			if !backup {
				args = append(args, "--no-backup")
			}
			code, out, errOut = runCmd(t, args...)
			require.Equal(t, 0, code, errOut)
			require.NoFileExists(t, flowFile)
			if backup {
				bak := strings.TrimSpace(out[strings.LastIndex(out, " ")+1:])
				require.Contains(t, out, "moved the files of train to")
				require.FileExists(t, filepath.Join(bak, "train_flow.json"))
				steps, err := checkpoint.ReadFlowSteps(bak, "train")
				require.NoError(t, err)
				require.Len(t, steps, 2)
			} else {
				require.Contains(t, out, "deleted the files of train")
			}
			code, _, errOut = runCmd(t, "status", "train", "--dir", dir)
			require.Equal(t, 1, code)
			require.Contains(t, errOut, "no checkpoint")
		})
	}
}
