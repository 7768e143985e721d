package postgres

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Saves are committed in groups: while one group is on its way to the
// server, the saves that arrive queue up, and the next group takes them all
// in one statement per kind, one round trip, one commit. Every caller waits
// for the commit of its own save, so an acknowledged save is durable; with
// many workers, each commit carries many saves. No goroutine of its own: a
// caller that finds fewer than maxFlushing groups in flight leads one, and
// hands the lead to a waiting caller when it is done.
//
// One group at a time per runner: a commit waits for a flush of the WAL to
// disk (2 ms here), and the server flushes for one commit at a time, so
// groups sent side by side wait for each other's flushes while each carries
// fewer saves. With 4 in flight, 4 runners of 16 workers made groups of 3
// saves and 470 commits/s (1,500 items/s); with 1, groups of 9 (and of
// hundreds under Process, whose workers do not wait for their commit).
type saver struct {
	c        *attached
	mu       sync.Mutex
	queue    []*saveReq
	flushing int // groups on their way
}

type saveReq struct {
	key     string
	result  string // JSON, for a result
	msg     string // for a failure
	failed  bool
	claimed bool
	id      int64 // makes a retried save count once

	wake     chan bool // true: lead the next group; false: done
	saved    bool
	attempts int
	err      error
}

const (
	maxGroup    = 2000 // saves in one commit at most
	maxFlushing = 1    // groups on their way at once (see above)
)

func (s *saver) do(ctx context.Context, r *saveReq) {
	r.id = randomID()
	r.wake = make(chan bool, 1)
	// A request either leads a group, which starts with it, or waits in the
	// queue for exactly one wake: false when a leader wrote it, true when a
	// leader handed it the lead and took it off the queue.
	s.mu.Lock()
	if s.flushing < maxFlushing {
		s.flushing++
	} else {
		s.queue = append(s.queue, r)
		s.mu.Unlock()
		if !<-r.wake {
			return
		}
		s.mu.Lock()
	}
	n := min(len(s.queue), maxGroup-1)
	group := append([]*saveReq{r}, s.queue[:n]...)
	s.queue = slices.Clone(s.queue[n:])
	s.mu.Unlock()

	s.flush(ctx, group)
	for _, g := range group[1:] {
		g.wake <- false
	}
	s.mu.Lock()
	if len(s.queue) > 0 {
		next := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()
		next.wake <- true // the lead passes on; the count stays
	} else {
		s.flushing--
		s.mu.Unlock()
	}
}

// The four statements of a group. A result or failure of a key this runner
// claimed is written only if the key is not completed, or was completed by
// this runner: first completion wins. Unclaimed saves (a direct SaveResult)
// always write: latest wins, as in the files. Keys go in byte order.
const (
	resultCols = `INSERT INTO checkpoint.items AS i
	(checkpoint_id, key, state, result, owner, save_id, outcomes, updated_at)
	SELECT $1, u.k, 2, u.r::json, $2, u.s, 1, clock_timestamp()
	FROM unnest($3::text[], $4::text[], $5::bigint[]) AS u(k, r, s) ORDER BY u.k
	ON CONFLICT (checkpoint_id, key) DO UPDATE SET
		state = 2, result = EXCLUDED.result, error = NULL, owner = EXCLUDED.owner, lease_until = NULL,
		outcomes = i.outcomes + (i.save_id IS DISTINCT FROM EXCLUDED.save_id)::int,
		save_id = EXCLUDED.save_id, updated_at = EXCLUDED.updated_at`
	errorCols = `INSERT INTO checkpoint.items AS i
	(checkpoint_id, key, state, error, owner, save_id, outcomes, attempts, updated_at)
	SELECT $1, u.k, 1, u.r, $2, u.s, 1, 1, clock_timestamp()
	FROM unnest($3::text[], $4::text[], $5::bigint[]) AS u(k, r, s) ORDER BY u.k
	ON CONFLICT (checkpoint_id, key) DO UPDATE SET
		state = 1, result = NULL, error = EXCLUDED.error, owner = EXCLUDED.owner, lease_until = NULL,
		outcomes = i.outcomes + (i.save_id IS DISTINCT FROM EXCLUDED.save_id)::int,
		attempts = i.attempts + (i.save_id IS DISTINCT FROM EXCLUDED.save_id)::int,
		save_id = EXCLUDED.save_id, updated_at = EXCLUDED.updated_at`
	firstWins = ` WHERE i.state <> 2 OR i.owner = EXCLUDED.owner`
	returning = ` RETURNING i.key, i.attempts`
)

var groupSQL = [4]string{
	resultCols + returning,             // unclaimed result
	resultCols + firstWins + returning, // claimed result
	errorCols + returning,              // unclaimed failure
	errorCols + firstWins + returning,  // claimed failure
}

func kind(r *saveReq) int {
	k := 0
	if r.claimed {
		k = 1
	}
	if r.failed {
		k += 2
	}
	return k
}

// flush writes a group. A key twice in the group (two goroutines saving it
// at once) goes in a second round, since one statement cannot write a row
// twice.
func (s *saver) flush(ctx context.Context, group []*saveReq) {
	for len(group) > 0 {
		var parts [4][]*saveReq
		var again []*saveReq
		seen := make(map[string]struct{}, len(group))
		for _, r := range group {
			if _, dup := seen[r.key]; dup {
				again = append(again, r)
				continue
			}
			seen[r.key] = struct{}{}
			k := kind(r)
			parts[k] = append(parts[k], r)
		}
		err := s.c.s.retry(ctx, "save", func(ctx context.Context) error { return s.send(ctx, parts) })
		if err != nil {
			for _, p := range parts {
				for _, r := range p {
					r.err = err
				}
			}
		}
		group = again
	}
}

func (s *saver) send(ctx context.Context, parts [4][]*saveReq) error {
	c := s.c
	var b pgx.Batch
	var sent [][]*saveReq
	for k, p := range parts {
		if len(p) == 0 {
			continue
		}
		keys, vals, ids := make([]string, len(p)), make([]string, len(p)), make([]int64, len(p))
		for i, r := range p {
			r.saved = false
			keys[i], ids[i] = r.key, r.id
			vals[i] = r.result
			if r.failed {
				vals[i] = strings.ToValidUTF8(r.msg, "\uFFFD")
			}
		}
		b.Queue(groupSQL[k], c.id, c.owner, keys, vals, ids)
		sent = append(sent, p)
	}
	c.s.saveTrips.Add(1)
	br := c.s.pool.SendBatch(ctx, &b)
	for _, p := range sent {
		at := make(map[string]*saveReq, len(p))
		for _, r := range p {
			at[r.key] = r
		}
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return err
		}
		for rows.Next() {
			var key string
			var attempts int
			if err := rows.Scan(&key, &attempts); err != nil {
				rows.Close()
				br.Close()
				return err
			}
			if r := at[key]; r != nil {
				r.saved, r.attempts = true, attempts
			}
		}
		if err := rows.Err(); err != nil {
			br.Close()
			return err
		}
		c.s.saves.Add(int64(len(p)))
	}
	return br.Close()
}
