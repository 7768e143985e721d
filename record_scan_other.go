//go:build !amd64 || purego

package checkpoint

// classifyVector is false: classify64Generic, in portable Go, costs more
// than scanBodyBytes (~1 ns a byte), so scanBody does not use scanBlocks.
// The tests still run scanBlocks with it.
const classifyVector = false

func classify64(p *[64]byte) (quote, bslash, open, shut uint64) {
	return classify64Generic(p)
}
