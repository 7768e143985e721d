//go:build amd64 && !purego

package checkpoint

import "golang.org/x/sys/cpu"

type classify64Impl struct {
	name string
	fn   func(*[64]byte) (uint64, uint64, uint64, uint64)
}

// classify64Impls are the implementations of classify64 this CPU runs.
func classify64Impls() []classify64Impl {
	impls := []classify64Impl{{"classify64Generic", classify64Generic}, {"classify64SSE2", classify64SSE2}}
	if cpu.X86.HasAVX2 {
		impls = append(impls, classify64Impl{"classify64AVX2", classify64AVX2})
	}
	return impls
}
