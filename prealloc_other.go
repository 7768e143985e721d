//go:build !linux

package checkpoint

import "errors"

// reserveBlocks is not supported here: appends allocate as they go.
func reserveBlocks(f appendFile, off, n int64) error { return errors.ErrUnsupported }

// trimReserved has nothing to give back where nothing is reserved.
func trimReserved(f appendFile, size int64) error { return nil }
