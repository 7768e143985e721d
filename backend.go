package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// A Backend keeps checkpoints somewhere other than JSONL files in a folder:
// in a database that runners on many machines share. The Postgres backend is
// the module github.com/checkpoint-go/checkpoint/postgres. Users only pass a
// Backend to Open with WithBackend; the Runner calls its methods.
//
// Keys cross this interface as their JSON text, results as JSON, exactly as
// they appear in the files.
type Backend interface {
	// Attach opens the checkpoint called name for one Runner, creating it if
	// needed.
	Attach(ctx context.Context, name string, cfg AttachConfig) (BackendCheckpoint, error)
}

// AttachConfig is what a Runner tells its Backend at Open.
type AttachConfig struct {
	Lease       time.Duration // how long a claim holds without renewal (WithLease)
	MaxAttempts int           // WithMaxAttempts; 0 means no limit
	Fresh       bool          // WithFresh: delete the checkpoint's data first
	Logger      *slog.Logger
}

// ClaimState is what Claim found for one key.
type ClaimState uint8

const (
	ClaimTaken     ClaimState = iota // now leased to this runner: yield the item
	ClaimDone                        // completed: skip it
	ClaimExhausted                   // failed WithMaxAttempts times: skip it
	ClaimHeld                        // leased by another live runner: try again later
)

// KeyState is a key's recorded outcome, as Load reports it.
type KeyState struct {
	Done     bool // the latest outcome is a result
	Attempts int  // failures recorded, over all runners
}

// BackendFailure is a key whose latest outcome is an error, as a Backend
// reports it.
type BackendFailure struct {
	Key      []byte // JSON text
	Error    string
	Attempts int
	Time     time.Time
}

// A BackendCheckpoint is one Runner's handle on one checkpoint in a Backend.
// Its methods are called from many goroutines at once. Writes must be durable
// when they return: a Runner acknowledges a save as soon as its Backend does.
type BackendCheckpoint interface {
	// Load calls fn for every key that has an outcome.
	Load(ctx context.Context, fn func(key []byte, s KeyState) error) error
	// Claim leases to this runner the keys that are neither completed, out
	// of attempts nor leased to another runner, in one round trip, and
	// reports in states (len(keys) long) what it found for each.
	Claim(ctx context.Context, keys [][]byte, states []ClaimState) error
	// Renew extends the leases this runner holds on keys.
	Renew(ctx context.Context, keys [][]byte) error
	// Release gives up this runner's leases on keys without an outcome.
	Release(ctx context.Context, keys [][]byte) error
	// SaveResult records result (JSON) for key. claimed says the key was
	// leased to this runner: then a completion by another runner wins and
	// saved is false (first completion wins). Unclaimed saves replace
	// whatever is there (latest wins, as in the files).
	SaveResult(ctx context.Context, key, result []byte, claimed bool) (saved bool, err error)
	// SaveError records a failure for key under the same rule, and returns
	// the key's failures so far.
	SaveError(ctx context.Context, key []byte, msg string, claimed bool) (attempts int, saved bool, err error)
	// Result returns key's result, if completed.
	Result(ctx context.Context, key []byte) (result []byte, found bool, err error)
	// Results calls fn with every completed key and its result, in the order
	// they were completed. The slices are valid during the call only.
	Results(ctx context.Context, fn func(key, result []byte) error) error
	// Errors calls fn with every failed key, oldest failure first.
	Errors(ctx context.Context, fn func(f BackendFailure) error) error
	// Clear deletes every outcome and lease of the checkpoint.
	Clear(ctx context.Context) error
	// Close lets go of the checkpoint (not of the Backend).
	Close() error
}

// DefaultLease is how long a claimed item stays leased without renewal when
// WithLease is not given.
const DefaultLease = 30 * time.Second

// WithBackend keeps the checkpoint in b instead of JSONL files: the Runner
// is the same, shared with runners on other machines that open the same name
// in the same place. WithDir, WithSync and WithSkipCorrupt do not apply.
func WithBackend(b Backend) Option {
	return func(o *options) { o.backend = b }
}

// WithLease sets, for a Runner with a Backend, how long an item claimed by
// this runner stays reserved to it if the runner stops renewing the claim
// (killed, cut from the network): after d, other runners take the item. The
// runner renews its claims every d/3 while it holds them, so an item may take
// longer than d. The default is DefaultLease.
func WithLease(d time.Duration) Option {
	return func(o *options) { o.lease = d }
}

// ErrBackend wraps the errors of a Backend, so that a caller can tell a
// failure of the shared store from one of its own.
var ErrBackend = errors.New("checkpoint backend")

func backendErr(op string, err error) error {
	if err == nil || errors.Is(err, ErrBackend) {
		return err
	}
	return fmt.Errorf("checkpoint: %s: %w: %w", op, ErrBackend, err)
}
