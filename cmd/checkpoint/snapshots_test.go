package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/stretchr/testify/require"
)

func TestSnapshotsCommand(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := runCmd(t, "snapshots", "--dir", dir)
	require.Equal(t, 0, code)
	require.Equal(t, "no snapshots\n", out)
	code, out, _ = runCmd(t, "snapshots", "--dir", dir, "--json")
	require.Equal(t, 0, code)
	require.Equal(t, "[]\n", out)

	shared, err := checkpoint.OpenSnapshots(dir)
	require.NoError(t, err)
	require.NoError(t, shared.Save("model_epoch_5", map[string]int{"epoch": 5}))
	flow, err := checkpoint.NewFlow[int]("train", checkpoint.WithDir(dir), checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	w, err := flow.Snapshots().Create("weights.bin")
	require.NoError(t, err)
	_, err = w.Write(bytes.Repeat([]byte{1}, 3000))
	require.NoError(t, err)
	// Listed while the flow holds its lock: reading takes none.
	require.NoError(t, w.Close())

	code, out, _ = runCmd(t, "snapshots", "--dir", dir)
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	require.Regexp(t, `^FLOW\s+NAME\s+KIND\s+SIZE\s+SAVED$`, lines[0])
	require.Regexp(t, `^-\s+model_epoch_5\s+json\s+11 B\s+\d{4}-`, lines[1])
	require.Regexp(t, `^train\s+weights.bin\s+raw\s+2.9 KiB\s+\d{4}-`, lines[2])

	code, out, _ = runCmd(t, "snapshots", "--dir", dir, "--flow", "train", "--json")
	require.Equal(t, 0, code)
	var rows []struct {
		Flow, Name, Kind string
		Size             int64
		SavedAt          time.Time `json:"saved_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
	require.Len(t, rows, 1)
	require.Equal(t, "train", rows[0].Flow)
	require.Equal(t, int64(3000), rows[0].Size)
	require.WithinDuration(t, time.Now(), rows[0].SavedAt, time.Minute)
	require.NoError(t, flow.Close())

	code, _, stderr := runCmd(t, "snapshots", "--dir", filepath.Join(dir, "missing"))
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "no such file")
	code, _, _ = runCmd(t, "snapshots", "extra-arg")
	require.Equal(t, 2, code)
	code, _, _ = runCmd(t, "snapshots", "--flow", "../x", "--dir", dir)
	require.Equal(t, 1, code)
}

func TestWriteFlowStatus(t *testing.T) {
	dir := t.TempDir()
	flow, err := checkpoint.NewFlow[int]("job", checkpoint.WithDir(dir), checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	flow.Step("fetch", func(context.Context, *int) error { time.Sleep(2 * time.Millisecond); return nil })
	flow.Step("parse", func(context.Context, *int) error { panic("bad row\nwith a stack") })
	flow.Step("store", func(context.Context, *int) error { return nil })
	_, err = flow.Run(context.Background(), 0)
	require.Error(t, err)
	require.NoError(t, flow.Close())

	steps, err := checkpoint.ReadFlowSteps(dir, "job")
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, writeFlowStatus(&out, steps))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 4, out.String())
	require.Regexp(t, `^STEP\s+STATUS\s+ATTEMPTS\s+STARTED\s+DURATION\s+ERROR$`, lines[0])
	require.Regexp(t, `^fetch\s+done\s+1\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d+(\.\d+)?ms\s+-$`, lines[1])
	require.Regexp(t, `^parse\s+failed\s+1\s+\S+ \S+\s+\S+\s+panic: bad row \(\+\d+ lines\)$`, lines[2])
	require.Regexp(t, `^store\s+pending\s+0\s+-\s+-\s+-$`, lines[3])

	_, err = checkpoint.ReadFlowSteps(dir, "nope")
	require.ErrorIs(t, err, fs.ErrNotExist)
}
