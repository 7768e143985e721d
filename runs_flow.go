package checkpoint

import (
	"encoding/json"
	"fmt"
)

// startOwnRun is the hook of flows and pipelines in NewFlow and
// OpenPipeline: they record their runs in NAME_runs.jsonl like a Runner
// (WithParams included), without journals of their own, so a run's counts
// are zero; the runs of a pipeline's steps are in the steps' own files.
func startOwnRun(o *options, dir, name string) (*runLog, error) {
	var params json.RawMessage
	if o.params != nil {
		b, err := json.Marshal(o.params)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: params are not JSON: %w", err)
		}
		params = b
	}
	return startRun(dir, name, params, nil, o.logger)
}
