package checkpoint

import (
	"encoding/json"
	"fmt"
	"path/filepath"
)

// startFlowRun is the hook of flows in NewFlow: a flow records its runs in
// NAME_runs.jsonl like a Runner (WithParams included). Its counts are of
// steps: those that finished during the run, done or failed, by their
// latest outcome in NAME_flow.json (a step that failed and then succeeded
// in one run counts once, as completed).
func startFlowRun(o *options, dir, name string) (*runLog, error) {
	return startOwnRun(o, dir, name, []runJournal{{Role: roleSteps, File: filepath.Base(flowPath(dir, name))}})
}

// startPipelineRun is the hook of pipelines in OpenPipeline. A pipeline has
// no journals of its own: each step's journals join its run as the step
// opens (see runLog.addJournals), so its counts are the items its steps
// saved during the run. The steps' own runs are in the steps' files too.
func startPipelineRun(o *options, dir, name string) (*runLog, error) {
	return startOwnRun(o, dir, name, nil)
}

func startOwnRun(o *options, dir, name string, journals []runJournal) (*runLog, error) {
	var params json.RawMessage
	if o.params != nil {
		b, err := json.Marshal(o.params)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: params are not JSON: %w", err)
		}
		params = b
	}
	return startRun(dir, name, params, journals, o.logger)
}
