//go:build amd64 && !purego

package checkpoint

import "golang.org/x/sys/cpu"

// classifyVector: classify64 compares 16 or 32 bytes at a time, which makes
// scanBlocks faster than scanBodyBytes.
const classifyVector = true

// classify64 returns masks of the bytes of *p (bit k for p[k]) that are a
// quote, a backslash, an opening bracket ('{' or '[') and a closing one. It
// is classify64Generic with vector compares, in assembly as Go does not
// vectorise: AVX2 where the CPU has it (twice as fast), else SSE2, which
// every amd64 CPU has.
func classify64(p *[64]byte) (quote, bslash, open, shut uint64) {
	if cpu.X86.HasAVX2 {
		return classify64AVX2(p)
	}
	return classify64SSE2(p)
}

//go:noescape
func classify64AVX2(p *[64]byte) (quote, bslash, open, shut uint64)

//go:noescape
func classify64SSE2(p *[64]byte) (quote, bslash, open, shut uint64)
