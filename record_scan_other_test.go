//go:build !amd64 || purego

package checkpoint

type classify64Impl struct {
	name string
	fn   func(*[64]byte) (uint64, uint64, uint64, uint64)
}

// classify64Impls are the implementations of classify64 this CPU runs.
func classify64Impls() []classify64Impl {
	return []classify64Impl{{"classify64Generic", classify64Generic}}
}
