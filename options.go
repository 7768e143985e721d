package checkpoint

import (
	"log/slog"
)

// An Option configures Open.
type Option func(*options)

type options struct {
	dir         string
	maxAttempts int
	fresh       bool
	logger      *slog.Logger
	batch       batchOptions // read by OpenBatch only
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
func WithFresh() Option {
	return func(o *options) { o.fresh = true }
}

// WithLogger sets where notices about resuming and repairing files go.
// The default is slog.Default() at the time of Open. The library never writes
// to standard output itself.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}
