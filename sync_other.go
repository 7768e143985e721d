//go:build !linux

package checkpoint

// syncData forces f to stable storage.
func syncData(f appendFile) error { return f.Sync() }
