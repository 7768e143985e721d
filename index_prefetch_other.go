//go:build !amd64

package checkpoint

// canPrefetch: no prefetch here; upsertBatch reads a batch's slots first
// instead (see there).
const canPrefetch = false

func prefetch([]uintptr) {}
