package checkpoint

import "encoding/binary"

// classify64Generic is classify64 in portable Go, for the tests and for
// the CPUs without vector compares in assembly: 8 bytes at a time in a
// uint64 (SWAR), each byte compared by arithmetic that cannot carry into the
// next, and the bytes' top bits gathered into 8 bits of the mask by a
// multiplication.
func classify64Generic(p *[64]byte) (quote, bslash, open, shut uint64) {
	for k := range 8 {
		w := binary.LittleEndian.Uint64(p[8*k:])
		// '[' and ']' differ from '{' and '}' by bit 5 alone: fold them.
		f := w | 0x2020202020202020
		quote |= gatherBytes(eqBytes(w, '"')) << (8 * k)
		bslash |= gatherBytes(eqBytes(w, '\\')) << (8 * k)
		open |= gatherBytes(eqBytes(f, '{')) << (8 * k)
		shut |= gatherBytes(eqBytes(f, '}')) << (8 * k)
	}
	return quote, bslash, open, shut
}

const (
	swarOnes = 0x0101010101010101
	swarLow7 = 0x7f7f7f7f7f7f7f7f
	swarHigh = 0x8080808080808080
)

// eqBytes returns 0x80 in each byte of w that equals c, 0 in the others.
func eqBytes(w uint64, c byte) uint64 {
	t := w ^ swarOnes*uint64(c)
	// A byte of t is zero iff neither its low 7 bits (which add up to at
	// most 0xfe with 0x7f: no carry out) nor its top bit are set.
	return ^((t&swarLow7 + swarLow7) | t) & swarHigh
}

// gatherBytes returns the top bits of m's 8 bytes (m has no other bits) as
// the 8 bits of a byte, the lowest byte's in bit 0: the multiplication puts
// byte k's bit at bit 56+k, and no two partial products meet.
func gatherBytes(m uint64) uint64 {
	return (m >> 7) * 0x0102040810204080 >> 56
}
