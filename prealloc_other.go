//go:build !linux

package checkpoint

import "errors"

// reserveBlocks is not supported here: appends allocate as they go.
func reserveBlocks(f appendFile, off, n int64) error { return errors.ErrUnsupported }
