//go:build race

package checkpoint

// raceOn: under the race detector sync.Pool drops a quarter of what is put
// back, on purpose, so pooled buffers are allocated again at random.
const raceOn = true
