//go:build amd64 && !purego

#include "textflag.h"

// The bytes classify64 compares with, 16 of each: quote, backslash, the
// bit that folds '[' and ']' into '{' and '}', '{', '}'.
DATA scanBytes<>+0x00(SB)/8, $0x2222222222222222
DATA scanBytes<>+0x08(SB)/8, $0x2222222222222222
DATA scanBytes<>+0x10(SB)/8, $0x5c5c5c5c5c5c5c5c
DATA scanBytes<>+0x18(SB)/8, $0x5c5c5c5c5c5c5c5c
DATA scanBytes<>+0x20(SB)/8, $0x2020202020202020
DATA scanBytes<>+0x28(SB)/8, $0x2020202020202020
DATA scanBytes<>+0x30(SB)/8, $0x7b7b7b7b7b7b7b7b
DATA scanBytes<>+0x38(SB)/8, $0x7b7b7b7b7b7b7b7b
DATA scanBytes<>+0x40(SB)/8, $0x7d7d7d7d7d7d7d7d
DATA scanBytes<>+0x48(SB)/8, $0x7d7d7d7d7d7d7d7d
GLOBL scanBytes<>(SB), NOPTR+RODATA, $0x50

// func classify64SSE2(p *[64]byte) (quote, bslash, open, shut uint64)
//
// Each 16 bytes: compare with each byte class (PCMPEQB gives 0xff where
// equal), gather the bytes' top bits into 16 bits (PMOVMSKB), and put
// them in place in the 64-bit masks.
TEXT ·classify64SSE2(SB), NOSPLIT, $0-40
	MOVQ	p+0(FP), SI
	MOVOU	scanBytes<>+0x00(SB), X8
	MOVOU	scanBytes<>+0x10(SB), X9
	MOVOU	scanBytes<>+0x20(SB), X10
	MOVOU	scanBytes<>+0x30(SB), X11
	MOVOU	scanBytes<>+0x40(SB), X12

	// Bytes 0..15.
	MOVOU	0(SI), X0
	MOVO	X0, X1
	PCMPEQB	X8, X1
	PMOVMSKB	X1, AX
	MOVO	X0, X2
	PCMPEQB	X9, X2
	PMOVMSKB	X2, BX
	POR	X10, X0
	MOVO	X0, X3
	PCMPEQB	X11, X3
	PMOVMSKB	X3, CX
	PCMPEQB	X12, X0
	PMOVMSKB	X0, DX

	// Bytes 16..31.
	MOVOU	16(SI), X0
	MOVO	X0, X1
	PCMPEQB	X8, X1
	PMOVMSKB	X1, R8
	MOVO	X0, X2
	PCMPEQB	X9, X2
	PMOVMSKB	X2, R9
	POR	X10, X0
	MOVO	X0, X3
	PCMPEQB	X11, X3
	PMOVMSKB	X3, R10
	PCMPEQB	X12, X0
	PMOVMSKB	X0, R11
	SHLQ	$16, R8
	ORQ	R8, AX
	SHLQ	$16, R9
	ORQ	R9, BX
	SHLQ	$16, R10
	ORQ	R10, CX
	SHLQ	$16, R11
	ORQ	R11, DX

	// Bytes 32..47.
	MOVOU	32(SI), X0
	MOVO	X0, X1
	PCMPEQB	X8, X1
	PMOVMSKB	X1, R8
	MOVO	X0, X2
	PCMPEQB	X9, X2
	PMOVMSKB	X2, R9
	POR	X10, X0
	MOVO	X0, X3
	PCMPEQB	X11, X3
	PMOVMSKB	X3, R10
	PCMPEQB	X12, X0
	PMOVMSKB	X0, R11
	SHLQ	$32, R8
	ORQ	R8, AX
	SHLQ	$32, R9
	ORQ	R9, BX
	SHLQ	$32, R10
	ORQ	R10, CX
	SHLQ	$32, R11
	ORQ	R11, DX

	// Bytes 48..63.
	MOVOU	48(SI), X0
	MOVO	X0, X1
	PCMPEQB	X8, X1
	PMOVMSKB	X1, R8
	MOVO	X0, X2
	PCMPEQB	X9, X2
	PMOVMSKB	X2, R9
	POR	X10, X0
	MOVO	X0, X3
	PCMPEQB	X11, X3
	PMOVMSKB	X3, R10
	PCMPEQB	X12, X0
	PMOVMSKB	X0, R11
	SHLQ	$48, R8
	ORQ	R8, AX
	SHLQ	$48, R9
	ORQ	R9, BX
	SHLQ	$48, R10
	ORQ	R10, CX
	SHLQ	$48, R11
	ORQ	R11, DX

	MOVQ	AX, quote+8(FP)
	MOVQ	BX, bslash+16(FP)
	MOVQ	CX, open+24(FP)
	MOVQ	DX, shut+32(FP)
	RET

// func classify64AVX2(p *[64]byte) (quote, bslash, open, shut uint64)
//
// classify64SSE2 32 bytes at a time.
TEXT ·classify64AVX2(SB), NOSPLIT, $0-40
	MOVQ	p+0(FP), SI
	VBROADCASTI128	scanBytes<>+0x00(SB), Y8
	VBROADCASTI128	scanBytes<>+0x10(SB), Y9
	VBROADCASTI128	scanBytes<>+0x20(SB), Y10
	VBROADCASTI128	scanBytes<>+0x30(SB), Y11
	VBROADCASTI128	scanBytes<>+0x40(SB), Y12
	VMOVDQU	0(SI), Y0
	VMOVDQU	32(SI), Y1

	VPCMPEQB	Y8, Y0, Y2
	VPMOVMSKB	Y2, AX
	VPCMPEQB	Y8, Y1, Y3
	VPMOVMSKB	Y3, R8
	SHLQ	$32, R8
	ORQ	R8, AX

	VPCMPEQB	Y9, Y0, Y2
	VPMOVMSKB	Y2, BX
	VPCMPEQB	Y9, Y1, Y3
	VPMOVMSKB	Y3, R9
	SHLQ	$32, R9
	ORQ	R9, BX

	VPOR	Y10, Y0, Y0
	VPOR	Y10, Y1, Y1

	VPCMPEQB	Y11, Y0, Y2
	VPMOVMSKB	Y2, CX
	VPCMPEQB	Y11, Y1, Y3
	VPMOVMSKB	Y3, R10
	SHLQ	$32, R10
	ORQ	R10, CX

	VPCMPEQB	Y12, Y0, Y2
	VPMOVMSKB	Y2, DX
	VPCMPEQB	Y12, Y1, Y3
	VPMOVMSKB	Y3, R11
	SHLQ	$32, R11
	ORQ	R11, DX

	VZEROUPPER
	MOVQ	AX, quote+8(FP)
	MOVQ	BX, bslash+16(FP)
	MOVQ	CX, open+24(FP)
	MOVQ	DX, shut+32(FP)
	RET
