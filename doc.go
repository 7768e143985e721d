// Package checkpoint makes long batch jobs resumable.
//
// A job that runs over many items (API calls, scraping, labelling, ETL,
// evaluation) records the outcome of each item by key as it goes. When the
// job dies (kill -9, OOM, a panic, a power cut, Ctrl-C) and is run again, it
// skips the items that are done, retries the ones that failed, and never
// loses a result that was saved:
//
//	runner, err := checkpoint.Open[int, Prompt]("labels")
//	if err != nil { ... }
//	defer runner.Close()
//	for p := range runner.Iterate(prompts, func(p Prompt) int { return p.ID }) {
//		label, err := classify(p)
//		if err != nil {
//			runner.SaveError(p.ID, err) // retried on the next run
//			continue
//		}
//		runner.SaveResult(p.ID, label)
//	}
//	for _, f := range runner.AllErrors() { ... } // review what failed
//
// Runner.Process runs a function over the items with many workers at once,
// retries errors marked Retryable with backoff, records a panic as the item's
// failure, and stops cleanly when its context is cancelled. A BatchRunner
// (OpenBatch) adds a progress bar that counts the whole input, resumed items
// included, and writes plain lines when its output is not a terminal.
//
// Outcomes are appended as JSON lines to <name>_results.jsonl and
// <name>_errors.jsonl in the checkpoint folder, with counts in
// <name>_meta.json: the same files as the Python checkpoint library, which can
// read them, and whose files this package resumes from.
//
// Each record is handed to the operating system in a single write before
// SaveResult or SaveError returns, so it survives the death of the process.
// Open repairs the torn last line a crash can leave, rebuilds a missing or
// damaged meta file, and refuses (with ErrCorrupt) a damaged line anywhere
// else rather than starting over. Only the state of each key and where its
// latest line is are kept in memory; results are read back from disk.
package checkpoint
