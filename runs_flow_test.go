package checkpoint_test

import (
	"context"
	"testing"

	"github.com/checkpoint-go/checkpoint"
	"github.com/stretchr/testify/require"
)

func TestFlowAndPipelineRecordRuns(t *testing.T) {
	dir := t.TempDir()
	f, err := checkpoint.NewFlow[int]("train", checkpoint.WithDir(dir), quiet, checkpoint.WithParams(map[string]int{"lr": 3}))
	require.NoError(t, err)
	f.Step("one", func(context.Context, *int) error { return nil })
	_, err = f.Run(context.Background(), 0)
	require.NoError(t, err)
	runs, err := checkpoint.ReadRuns(dir, "train")
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, checkpoint.RunRunning, runs[0].Status)
	require.NoError(t, f.Close())
	runs, err = checkpoint.ReadRuns(dir, "train")
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, checkpoint.RunFinished, runs[0].Status)
	require.JSONEq(t, `{"lr":3}`, string(runs[0].Params))

	p, err := checkpoint.OpenPipeline[int]("pipe", checkpoint.WithDir(dir), quiet)
	require.NoError(t, err)
	s, err := checkpoint.PipelineStep[int, int](p, "fetch")
	require.NoError(t, err)
	require.NoError(t, s.SaveResult(1, 10))
	require.NoError(t, p.Close())
	runs, err = checkpoint.ReadRuns(dir, "pipe")
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, checkpoint.RunFinished, runs[0].Status)
}
