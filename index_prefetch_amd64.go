package checkpoint

// canPrefetch: this architecture has prefetch, so upsertBatch pipelines
// its table reads (see there).
const canPrefetch = true

// prefetch asks the CPU to bring the cache line at each address into its
// caches, without waiting for it: PREFETCHT0, which never faults, so any
// address will do. Go has no prefetch the compiler emits outside the
// runtime, hence assembly; a call per group of keys costs a few
// nanoseconds.
//
//go:noescape
func prefetch(addrs []uintptr)
