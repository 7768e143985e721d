//go:build amd64 && !purego

package checkpoint

// classify64 returns masks of the bytes of *p (bit k for p[k]) that are a
// quote, a backslash, an opening bracket ('{' or '[') and a closing one. It
// is classify64Generic with SSE2 compares (in every amd64 CPU): a quarter
// of the instructions. Written in assembly as Go does not vectorise.
//
//go:noescape
func classify64(p *[64]byte) (quote, bslash, open, shut uint64)
