package checkpoint

import (
	"log/slog"
	"time"
)

// An Option configures Open.
type Option func(*options)

type options struct {
	dir         string
	maxAttempts int
	fresh       bool
	logger      *slog.Logger
	batch       batchOptions // read by OpenBatch only
	sync        SyncPolicy
	skipCorrupt bool
	params      any           // WithParams (runs.go)
	ext         extOptions    // pipelines, in-flight tracking, WithDisabled, the cache
	backend     Backend       // WithBackend; see backend.go
	lease       time.Duration // WithLease

	// Seams for fault-injection tests; nil in real use.
	wrapFile func(appendFile) appendFile         // wraps each journal's file
	rename   func(oldpath, newpath string) error // replaces os.Rename for the meta file
}

func defaultOptions() options {
	return options{dir: "checkpoints"}
}

// WithDir sets the folder that holds the checkpoint's files. The default is
// "checkpoints", relative to the working directory. Open creates it if needed.
func WithDir(dir string) Option {
	return func(o *options) { o.dir = dir }
}

// WithMaxAttempts sets how many recorded failures make a key give up: once a
// key has failed n times (counted over all runs) Iterate skips it and it stays
// in AllErrors. The default, 0, retries failed keys on every run forever.
func WithMaxAttempts(n int) Option {
	return func(o *options) { o.maxAttempts = n }
}

// WithFresh deletes the checkpoint's data at Open, so the run starts from zero.
// The run history (NAME_runs.jsonl) and metrics are kept: a fresh run is still
// part of the job's history. `checkpoint reset` moves those too.
func WithFresh() Option {
	return func(o *options) { o.fresh = true }
}

// WithLogger sets where notices about resuming and repairing files go.
// The default is slog.Default() at the time of Open. The library never writes
// to standard output itself.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithSkipCorrupt lets Open go on past damaged lines in the middle of a file,
// which it otherwise refuses with an error wrapping ErrCorrupt. Each damaged
// line is logged, its bytes are appended to a side file beside the journal
// (<name>_results.jsonl.corrupt or <name>_errors.jsonl.corrupt) and synced,
// and only then is the line blanked out in place (overwritten with spaces), so
// later runs open without this option and nothing is destroyed. Records on
// skipped lines are not in the checkpoint: their items are done again.
//
// A line whose key does not decode into the runner's key type is not skipped:
// that means the wrong key type, not damage, and Open still fails.
func WithSkipCorrupt() Option {
	return func(o *options) { o.skipCorrupt = true }
}
