//go:build !linux

package checkpoint

// mapTable: table chunks are Go memory on systems other than Linux.
func mapTable(int) (b, mapping []byte) { return nil, nil }

func unmapTable([]byte) {}
