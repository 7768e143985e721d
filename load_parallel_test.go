package checkpoint

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// The parallel loader (loadParallel) must load every journal exactly as the
// sequential one (journal.load through loadSequential) does: same index,
// counts, repairs, side files and error. These tests load the same bytes
// both ways, in two folders, and compare everything.

// loadOutcome is everything a load leaves behind.
type loadOutcome struct {
	Err       string
	Keys      []string // key=offset of each index entry, in order of first appearance
	Completed int
	Records   int
	Size      int64 // the journal's size as loaded (j.size)
	Files     map[string]string
}

// loadBoth loads content as a results journal sequentially and with the
// parallel loader (helpers goroutines, chunks of chunk bytes), and returns
// both outcomes.
//
// The read buffer starts at a size that depends on chunk, down to a few
// bytes, so that lines cross its end and outgrow it.
func loadBoth[K comparable](t testing.TB, content []byte, skipCorrupt, readOnly bool, helpers int, chunk int64) (seq, par loadOutcome) {
	t.Helper()
	return loadOnce[K](t, content, skipCorrupt, readOnly, false, helpers, chunk),
		loadOnce[K](t, content, skipCorrupt, readOnly, true, helpers, chunk)
}

func testReadSize(chunk int64) int64 { return 1 + chunk%97 }

func loadOnce[K comparable](t testing.TB, content []byte, skipCorrupt, readOnly, parallel bool, helpers int, chunk int64) loadOutcome {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "job_results.jsonl")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	o := defaultOptions()
	o.skipCorrupt = skipCorrupt
	j, err := openJournal(path, &o)
	if err != nil {
		t.Fatal(err)
	}
	defer j.f.Close()
	j.readOnly = readOnly
	codec, err := newKeyCodec[K]()
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner[K, json.RawMessage]{name: "job", dir: dir, log: slog.New(slog.DiscardHandler), keys: codec, results: j}
	r.index = newIndex(r.keys.hash, 0)
	var out loadOutcome
	add := func(off int64, sp *slot) {
		out.Records++
		if *sp == 0 {
			out.Completed++
		}
		*sp = sp.result(off)
	}
	if parallel {
		size, err := fileSize(j.f)
		if err != nil {
			t.Fatal(err)
		}
		err = r.loadParallel(j, size, helpers, chunk, testReadSize(chunk), add)
		if err != nil {
			out.Err = strings.ReplaceAll(err.Error(), dir, "DIR")
		}
	} else if err := r.loadSequential(j, add); err != nil {
		out.Err = strings.ReplaceAll(err.Error(), dir, "DIR")
	}
	for k, s := range r.index.all {
		out.Keys = append(out.Keys, fmt.Sprintf("%v=%d", k, s.offset()))
	}
	out.Size = j.size
	out.Files = map[string]string{}
	for _, suffix := range []string{"", ".torn", ".corrupt"} {
		if b, err := os.ReadFile(path + suffix); err == nil {
			out.Files[suffix] = string(b)
		}
	}
	return out
}

// sameLoad fails t if the two outcomes differ. After an error the index is
// thrown away (Open fails), so it may hold more records of the parallel
// load, parsed past the error: then only the error and the files count.
func sameLoad(t testing.TB, seq, par loadOutcome, what string) {
	t.Helper()
	if seq.Err != "" && par.Err != "" {
		seq.Keys, seq.Completed, seq.Records = nil, 0, 0
		par.Keys, par.Completed, par.Records = nil, 0, 0
	}
	if !reflect.DeepEqual(seq, par) {
		t.Fatalf("%s: the parallel load differs from the sequential one:\nsequential: %+v\nparallel:   %+v", what, seq, par)
	}
}

func loadLine(key string, n int) string {
	return fmt.Sprintf(`{"key":%s,"result":{"n":%d},"timestamp":"2026-01-02T03:04:05.000000+00:00"}`, key, n)
}

func TestLoadParallelMatchesSequential(t *testing.T) {
	line := func(k, n int) string { return loadLine(fmt.Sprint(k), n) }
	L := int64(len(line(1, 1)) + 1) // every line(k<10, n<10) has this length with its newline
	long := loadLine("7", 1) + strings.Repeat(" ", 0)
	long = strings.Replace(long, `{"n":1}`, `{"n":"`+strings.Repeat("x", 500)+`"}`, 1)
	lines := func(ls ...string) []byte { return []byte(strings.Join(ls, "\n") + "\n") }
	tests := []struct {
		name        string
		content     []byte
		chunks      []int64 // chunk sizes to try
		skipCorrupt bool
		readOnly    bool
		wantErr     string // in both errors
		wantKeys    int
	}{
		{name: "boundary inside a line", content: lines(line(1, 1), line(2, 1), line(3, 1)), chunks: []int64{L / 2, L + 7, 2*L - 3}, wantKeys: 3},
		{name: "boundary on a newline", content: lines(line(1, 1), line(2, 1), line(3, 1), line(4, 1)), chunks: []int64{L - 1, 2*L - 1}, wantKeys: 4},
		{name: "boundary just after a newline", content: lines(line(1, 1), line(2, 1), line(3, 1), line(4, 1)), chunks: []int64{L, 2 * L}, wantKeys: 4},
		{name: "boundary on a CRLF", content: []byte(line(1, 1) + "\r\n" + line(2, 1) + "\r\n" + line(3, 1) + "\r\n"), chunks: []int64{L - 1, L, L + 1}, wantKeys: 3},
		{name: "blank lines", content: lines(line(1, 1), "", "   ", line(2, 1), "\r", line(3, 1)), chunks: []int64{3, L - 1, L}, wantKeys: 3},
		{name: "same key in different chunks: latest wins", content: lines(line(1, 1), line(2, 1), line(1, 2), line(3, 1), line(1, 3)), chunks: []int64{L, L + 5, 2 * L}, wantKeys: 3},
		{name: "line longer than several chunks", content: lines(line(1, 1), long, line(2, 1)), chunks: []int64{8, 64, L}, wantKeys: 3},
		{name: "bad line in the middle of a chunk", content: lines(line(1, 1), "garbage", line(2, 1), line(3, 1)), chunks: []int64{4 * L, 3 * L}, wantErr: "line 2 is not a record"},
		{name: "bad line at a chunk's end", content: lines(line(1, 1), line(2, 1), "garbage", line(3, 1)), chunks: []int64{2*L + 8, 2*L + 7}, wantErr: "line 3 is not a record"},
		{name: "bad lines across chunks", content: lines(line(1, 1), "bad one", "bad two", "bad three", line(2, 1)), chunks: []int64{L + 3, L + 8, 9}, wantErr: "line 2 is not a record"},
		{name: "bad lines set aside", content: lines(line(1, 1), "bad one", line(2, 1), "bad two", "bad three", line(3, 1)), chunks: []int64{5, L, L + 9}, skipCorrupt: true, wantKeys: 3},
		{name: "damaged end cut off", content: lines(line(1, 1), line(2, 1), "bad one", "bad two"), chunks: []int64{5, L, L + 3}, wantKeys: 2},
		{name: "torn tail", content: []byte(line(1, 1) + "\n" + line(2, 1) + "\n" + line(3, 1)[:20]), chunks: []int64{5, L, L + 3}, wantKeys: 2},
		{name: "whole last record without its newline", content: []byte(line(1, 1) + "\n" + line(2, 1) + "\n" + line(3, 1)), chunks: []int64{5, L, L + 3}, wantKeys: 3},
		{name: "torn tail read-only", content: []byte(line(1, 1) + "\n" + line(2, 1) + "\n" + line(3, 1)[:20]), chunks: []int64{5, L}, readOnly: true, wantKeys: 2},
		{name: "damaged end read-only", content: lines(line(1, 1), line(2, 1), "bad"), chunks: []int64{5, L}, readOnly: true, wantKeys: 2},
		{name: "key that does not decode", content: lines(line(1, 1), line(2, 1), loadLine(`"x"`, 1), line(3, 1)), chunks: []int64{5, L, L + 3}, wantErr: "line 3: key"},
		{name: "bad line before a key that does not decode", content: lines(line(1, 1), "bad", loadLine(`"x"`, 1)), chunks: []int64{5, L, L + 3}, wantErr: "line 2 is not a record"},
		{name: "key that does not decode after bad lines set aside", content: lines(line(1, 1), "bad", loadLine(`"x"`, 1)), chunks: []int64{5, L}, skipCorrupt: true, wantErr: "line 3: key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range tt.chunks {
				for helpers := 1; helpers <= 3; helpers++ {
					seq, par := loadBoth[int64](t, tt.content, tt.skipCorrupt, tt.readOnly, helpers, chunk)
					sameLoad(t, seq, par, fmt.Sprintf("chunk %d, %d helpers", chunk, helpers))
					if tt.wantErr != "" && !strings.Contains(par.Err, tt.wantErr) {
						t.Fatalf("chunk %d: error %q, want it to hold %q", chunk, par.Err, tt.wantErr)
					}
					if tt.wantErr == "" && par.Err != "" {
						t.Fatalf("chunk %d: %s", chunk, par.Err)
					}
					if tt.wantErr == "" && len(par.Keys) != tt.wantKeys {
						t.Fatalf("chunk %d: %d keys %v, want %d", chunk, len(par.Keys), par.Keys, tt.wantKeys)
					}
				}
			}
		})
	}
	t.Run("latest wins at the offset of the last line", func(t *testing.T) {
		content := lines(line(1, 1), line(2, 1), line(1, 2), line(3, 1), line(1, 3))
		_, par := loadBoth[int64](t, content, false, false, 2, L+5)
		if want := fmt.Sprintf("1=%d", 4*L); par.Keys[0] != want {
			t.Fatalf("key 1 at %s, want %s", par.Keys[0], want)
		}
	})
}

// randomJournal builds a journal of about n lines from rng: records with
// keys from a small set (so keys repeat across chunks), in our compact form
// and Python's spacing, CRLF endings, blank lines, garbage, long lines,
// keys that do not decode as integers, and maybe a torn or damaged end.
func randomJournal(rng *rand.Rand, n int) []byte {
	var b strings.Builder
	for i := range n {
		k := fmt.Sprint(rng.IntN(n/2 + 1))
		var line string
		switch p := rng.IntN(100); {
		case p < 60:
			line = loadLine(k, i)
		case p < 68:
			line = fmt.Sprintf(`{"key": "%s", "result": {"n": %d}, "timestamp": "2026-01-02T03:04:05"}`, k, i)
		case p < 74:
			line = loadLine(k, i) + "\r"
		case p < 79:
			line = strings.Repeat(" ", rng.IntN(3))
		case p < 84:
			line = loadLine(k, i)[:rng.IntN(40)] // cut short, or garbage
		case p < 88:
			line = loadLine(k, i)
			line = strings.Replace(line, `{"n":`, `{"s":"`+strings.Repeat("y", rng.IntN(300))+`","n":`, 1)
		case p < 90:
			line = loadLine(`"k`+k+`"`, i) // not an integer key
		case p < 93:
			line = fmt.Sprintf(`{"key":%s,"error":"boom %d","attempt":1,"timestamp":"2026-01-02T03:04:05.000000+00:00"}`, k, i)
		default:
			line = loadLine(k, i)
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	s := b.String()
	switch rng.IntN(4) {
	case 0:
		s += loadLine("1", 1)[:rng.IntN(30)] // torn tail
	case 1:
		s += loadLine("2", 2) // whole, without its newline
	case 2:
		s += "damaged\n\x00\x00\n" // a damaged end
	}
	return []byte(s)
}

func TestLoadParallelRandomJournals(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rounds := 300
	if testing.Short() {
		rounds = 60
	}
	for round := range rounds {
		content := randomJournal(rng, 5+rng.IntN(60))
		skip, ro := rng.IntN(2) == 0, rng.IntN(4) == 0
		if round%2 == 0 {
			skip = true
		}
		chunk := int64(1 + rng.IntN(300))
		helpers := 1 + rng.IntN(3)
		what := fmt.Sprintf("round %d (chunk %d, %d helpers, skipCorrupt %v, readOnly %v):\n%s", round, chunk, helpers, skip, ro, content)
		seq, par := loadBoth[int64](t, content, skip, ro, helpers, chunk)
		sameLoad(t, seq, par, what)
		seqS, parS := loadBoth[string](t, content, skip, ro, helpers, chunk)
		sameLoad(t, seqS, parS, what+" (string keys)")
	}
}

func FuzzLoadParallel(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		f.Add(randomJournal(rng, 20), uint16(rng.IntN(200)), uint8(rng.IntN(4)), uint8(rng.IntN(4)))
	}
	f.Add([]byte(loadLine("1", 1)+"\n"+loadLine("1", 2)+"\r\n\n"+loadLine("2", 1)[:10]), uint16(7), uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, content []byte, chunk uint16, helpers, flags uint8) {
		seq, par := loadBoth[string](t, content, flags&1 != 0, flags&2 != 0, 1+int(helpers%3), 1+int64(chunk))
		sameLoad(t, seq, par, fmt.Sprintf("chunk %d, helpers %d, flags %d: %q", 1+int64(chunk), 1+helpers%3, flags, content))
	})
}

// TestOpenLoadsLargeJournalsInParallel: Open takes the parallel path for a
// journal of several chunks, and gets what the sequential load gets: the
// latest line of each key, a torn tail cut into the .torn file.
func TestOpenLoadsLargeJournalsInParallel(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	var b strings.Builder
	n := 0
	for b.Len() < 3*loadParallelMin {
		b.WriteString(loadLine(fmt.Sprint(n%20000), n))
		b.WriteByte('\n')
		n++
	}
	b.WriteString(loadLine("1", 1)[:25])
	if loadHelpers(int64(b.Len())) == 0 {
		t.Fatal("a journal of several chunks is loaded on one goroutine")
	}
	seq, par := loadBoth[int](t, []byte(b.String()), false, false, loadHelpers(int64(b.Len())), loadChunkSize)
	sameLoad(t, seq, par, "a large journal")

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "job_results.jsonl"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open[int, json.RawMessage]("job", WithDir(dir), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if c, _ := r.Progress(); c != 20000 {
		t.Fatalf("completed %d, want 20000", c)
	}
	var got struct {
		N int `json:"n"`
	}
	last := (n - 1) % 20000
	if ok, err := r.Result(last, &got); err != nil || !ok {
		t.Fatalf("result of key %d: %v %v", last, ok, err)
	}
	if got.N != n-1 {
		t.Fatalf("key %d's result is n=%d, want n=%d (its latest line)", last, got.N, n-1)
	}
	if _, err := os.Stat(filepath.Join(dir, "job_results.jsonl.torn")); err != nil {
		t.Fatalf("no .torn file: %v", err)
	}
}

// TestCompactCopiesLongRuns: Compact copies runs of kept lines longer than
// copyFromMin in the kernel (copy_file_range on Linux); the new journal
// must hold exactly the kept lines, in order.
func TestCompactCopiesLongRuns(t *testing.T) {
	dir := t.TempDir()
	var all, want strings.Builder
	const keys = 4000 // each saved twice: the second half of the file is kept, one run of ~300 KB
	for i := range 2 * keys {
		line := loadLine(fmt.Sprint(i%keys), i) + "\n"
		all.WriteString(line)
		if i >= keys {
			want.WriteString(line)
		}
	}
	if want.Len() < 2*copyFromMin {
		t.Fatalf("kept run of %d bytes is too short to be copied in the kernel", want.Len())
	}
	path := filepath.Join(dir, "job_results.jsonl")
	if err := os.WriteFile(path, []byte(all.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	before, after, err := Compact(dir, "job")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() || before != int64(all.Len()) || after != int64(want.Len()) {
		t.Fatalf("compact: %d -> %d bytes, file of %d bytes equal to the kept lines: %v", before, after, len(got), string(got) == want.String())
	}
}
