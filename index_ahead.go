package checkpoint

// The lookups of Iterate over shuffled items are software-pipelined. A
// lookup in a table far larger than the caches waits for memory: once for
// a key stored in its table slot (kindKey), twice for other keys (the table
// word, then the entry it points to). One after the other, the lookups
// would wait for each miss in turn. So the keys are read ahead in batches
// of prefetchLen, and each batch goes through three stages, one per batch
// consumed:
//
//  1. touchWords: hash the keys and prefetch their table slots (PREFETCHT0
//     where the architecture has it, else plain loads);
//  2. touchEntries, one batch later: read the entries those words point to
//     (the words are in cache by now); nothing for kindKey, whose slots
//     hold the key and whether it is completed;
//  3. doneAhead, one batch later again: the real lookups, all in cache.
//
// Stages 1 and 2 of two different batches are independent loads, so their
// misses are in flight together while stage 3 runs; no load waits on a miss
// issued just before it. The values read go to *sink, so that the loads are
// not optimised away; only the caller's goroutine writes it. Touching is only
// a hint: the index may change between the stages (saves, growth), and only
// stage 3, under the read lock, decides anything.

// touchWords stores the hash of each key in hs and brings its home table
// slot into cache. A prefetch does not wait for the line, so the batch's
// misses are all in flight at once; reading the slots instead held the
// loop on the CPU's load queue (prefetches: 1.30-1.39x the map loop in
// BenchmarkIterateShuffledVsMap, loads 0.98-1.04x, alternating runs).
func (x *index[K]) touchWords(keys []K, hs *[prefetchLen]uint64, sink *uint64) {
	keys = keys[:min(len(keys), prefetchLen)]
	for i, k := range keys {
		hs[i] = x.hash(k)
	}
	if canPrefetch {
		var addrs [upsertGroup]uintptr
		for i := 0; i < len(keys); i += upsertGroup {
			x.prefetchSlots(hs[i:len(keys)], &addrs)
		}
		return
	}
	*sink += x.touchSlots(hs[:len(keys)])
}

// touchEntries reads the entries of the keys of hashes hs[:n]: for each, the
// entry of the first word from its home on whose tag matches, which is the
// key's own but for a rare tag collision. At a table 3/4 full, about half
// the keys are not in their home word (linear probing), so the entry the
// home word points to would be the wrong one for them; the probe runs over
// words that stage 1 brought into cache, mostly within the same line.
func (x *index[K]) touchEntries(n int, hs *[prefetchLen]uint64, sink *uint64) {
	if x.kind == kindKey {
		return
	}
	var sum uint64
	t := &x.cur
	for _, h := range hs[:min(n, prefetchLen)] {
		tag := h >> posBits
		for i := t.home(h); ; i = t.next(i) {
			w := t.word(i)
			if w == 0 {
				break
			}
			if w>>posBits == tag {
				if p := int(w&posMask) - 1; p < x.n {
					sum += uint64(*x.slotAt(p))
				}
				break
			}
		}
	}
	*sink += sum
}

// doneAhead reports, as bit i of the result, which of keys (at most
// prefetchLen, hashes in hs, from touchWords) are completed, and moves c as
// findNear would have, one key after the other.
func (x *index[K]) doneAhead(keys []K, hs *[prefetchLen]uint64, c *cursor) uint64 {
	var done uint64
	if x.kind == kindKey {
		for i, k := range keys[:min(len(keys), prefetchLen)] {
			if s := x.keySlot(k, hs[i]); s != nil {
				p := int(s.w&posMask) - 1
				c.off = p != c.pos
				c.pos = p + 1
				if x.doneAt(p, s.w) {
					done |= 1 << i
				}
			}
		}
		return done
	}
	for i, k := range keys[:min(len(keys), prefetchLen)] {
		if p := x.findHashed(k, hs[i]); p >= 0 {
			c.off = p != c.pos
			c.pos = p + 1
			if x.slotAt(p).done() {
				done |= 1 << i
			}
		}
	}
	return done
}

// prefetchLen is the number of keys in a batch read ahead: with two
// batches in flight, enough misses to keep the memory system busy, few
// enough to stay in the L1 cache. At most 64 (a bit per key in doneAhead).
// 64 against 32, alternating runs of BenchmarkIterateShuffledVsMap at 10M
// keys: ratio to the map loop 1.02 and 0.85 against 0.71 and 0.74.
const prefetchLen = 64

// lookahead holds the keys computed ahead of Iterate's loop, in up to
// aheadBatches batches at the stages of the pipeline above.
type lookahead[K comparable] struct {
	b     [aheadBatches]aheadBatch[K]
	head  int    // b[head] is the batch being consumed, if queued > 0
	queue int    // batches read ahead, b[head] first
	end   int    // the item after the last one read ahead
	i     int    // keys[i:n] of b[head] are the keys of the next items
	done  uint64 // bit j: b[head].keys[j] was completed when looked up
	sink  uint64
}

// aheadBatches is the current batch and the two in stages 1 and 2.
const aheadBatches = 3

type aheadBatch[K comparable] struct {
	keys  [prefetchLen]K
	hs    [prefetchLen]uint64
	n     int
	stage int // 1: words read; 2: entries read too
}

// keyAhead returns the key of items[i], and skip if it was already
// completed when read ahead. While items come in the order of the entries
// (c.off is false) it is keyFn(items[i]), with skip false: the caller looks
// it up. Once they do not, it reads the keys of the next items ahead in
// batches, moves each batch one stage down the pipeline (see touchWords)
// per batch consumed, and looks the next batch up under one read lock.
//
// A completed key is skipped without a second look: nothing makes a result
// pending again but a later SaveError of the same key, and a skip decided a
// few items early is as right as one decided a moment before the item (a
// concurrent save could land just after either). Every other key is looked
// up again by the caller, as the item is reached, so that a key saved
// meanwhile (a duplicate item, saved in the loop) is not yielded twice.
// keyFn is still called once per item, up to aheadBatches*prefetchLen items
// before the loop reaches them. When items come back into the entries'
// order, the batches read ahead are used up and keyAhead is per key again.
func (r *Runner[K, T]) keyAhead(la *lookahead[K], items []T, i int, keyFn func(T) K, c *cursor) (k K, skip bool) {
	if la.queue > 0 {
		cur := &la.b[la.head]
		if la.i < cur.n {
			la.i++
			return cur.keys[la.i-1], la.done>>(la.i-1)&1 != 0
		}
		la.head = (la.head + 1) % aheadBatches
		la.queue--
	}
	if la.queue == 0 {
		if !c.off {
			return keyFn(items[i]), false
		}
		la.end = i
	}
	// items[i:la.end] are queued; read ahead (outside the lock: keyFn is the
	// caller's code) while items are out of order.
	var fresh int
	for c.off && la.queue < aheadBatches && la.end < len(items) {
		b := &la.b[(la.head+la.queue)%aheadBatches]
		b.n = min(prefetchLen, len(items)-la.end)
		for j := range b.n {
			b.keys[j] = keyFn(items[la.end+j])
		}
		b.stage = 0
		la.end += b.n
		la.queue++
		fresh++
	}
	cur := &la.b[la.head]
	r.mu.RLock()
	// Stage 1 for the new batches, stage 2 for the next one, then the
	// lookups of the current one (stages 1 and 2 at once on the first).
	for q := la.queue - fresh; q < la.queue; q++ {
		b := &la.b[(la.head+q)%aheadBatches]
		r.index.touchWords(b.keys[:b.n], &b.hs, &la.sink)
		b.stage = 1
	}
	for q := range min(la.queue, 2) {
		if b := &la.b[(la.head+q)%aheadBatches]; b.stage == 1 {
			r.index.touchEntries(b.n, &b.hs, &la.sink)
			b.stage = 2
		}
	}
	la.done = 0
	if !r.closed { // else the caller's lookup records ErrClosed
		la.done = r.index.doneAhead(cur.keys[:cur.n], &cur.hs, c)
	}
	r.mu.RUnlock()
	la.i = 1
	return cur.keys[0], la.done&1 != 0
}
