package checkpoint

import (
	"fmt"
	"os"
)

// WithDisabled turns checkpointing off for this run, as seed 004's
// --no-checkpoint does: everything runs, nothing is read from the
// checkpoint folder and nothing is written to it.
//
// Every method still works, over a private checkpoint in a temporary folder
// that Close removes: Iterate yields every item once, Process skips an item
// whose key it already did in this run, AllResults and Result return what
// this run saved (so a pipeline's next step still gets its input), and a
// Cache remembers values until Close. The folder's checkpoint, its lock and
// its files are not touched, so a run with checkpointing on can go on at the
// same time. Nothing is synced (SyncNone): it is thrown away anyway.
func WithDisabled() Option {
	return func(o *options) { o.ext.disabled = true }
}

// WithBackup makes WithFresh (and a pipeline's Reset and ResetStep) move the
// old files into a new folder <dir>/<name>.bak-<time>/ instead of deleting
// them, as `checkpoint reset` does.
func WithBackup() Option {
	return func(o *options) { o.ext.backup = true }
}

// useTempDir points a WithDisabled run at a new temporary folder and
// returns it ("" otherwise), for Close to remove.
func (o *options) useTempDir() (string, error) {
	if !o.ext.disabled {
		return "", nil
	}
	dir, err := os.MkdirTemp("", "checkpoint-disabled-*")
	if err != nil {
		return "", fmt.Errorf("checkpoint: disabled run: %w", err)
	}
	o.dir = dir
	o.sync = SyncNone
	o.fresh = false
	o.ext.heldLock = false
	return dir, nil
}
