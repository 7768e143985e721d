//go:build !amd64 || purego

package checkpoint

// classify64 returns masks of the bytes of *p (bit k for p[k]) that are a
// quote, a backslash, an opening bracket ('{' or '[') and a closing one.
func classify64(p *[64]byte) (quote, bslash, open, shut uint64) {
	return classify64Generic(p)
}
