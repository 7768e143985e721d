package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func openSnaps(t *testing.T) *Snapshots {
	t.Helper()
	s, err := OpenSnapshots(t.TempDir(), WithLogger(quietLogger()))
	require.NoError(t, err)
	return s
}

type model struct {
	Epoch   int       `json:"epoch"`
	Weights []float64 `json:"weights"`
}

func TestSnapshotsSaveLoadListDelete(t *testing.T) {
	s := openSnaps(t)
	var m model
	found, err := s.Load("model_epoch_5", &m)
	require.NoError(t, err)
	require.False(t, found)
	require.False(t, s.Exists("model_epoch_5"))
	list, err := s.List()
	require.NoError(t, err)
	require.Empty(t, list, "a folder not made yet lists nothing")

	before := time.Now().Add(-time.Second)
	require.NoError(t, s.Save("model_epoch_5", model{5, []float64{0.5, 1}}))
	require.NoError(t, s.Save("model_epoch_4", model{4, nil}))
	require.True(t, s.Exists("model_epoch_5"))
	found, err = s.Load("model_epoch_5", &m)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, model{5, []float64{0.5, 1}}, m)

	// The file is the value's plain JSON.
	b, err := os.ReadFile(filepath.Join(s.Dir(), "model_epoch_5.json"))
	require.NoError(t, err)
	require.JSONEq(t, `{"epoch":5,"weights":[0.5,1]}`, string(b))

	w, err := s.Create("weights.bin")
	require.NoError(t, err)
	_, err = w.Write([]byte("raw bytes"))
	require.NoError(t, err)
	require.False(t, s.Exists("weights.bin"), "invisible until Close")
	require.NoError(t, w.Close())
	require.ErrorIs(t, w.Close(), os.ErrClosed)
	_, err = w.Write([]byte("more"))
	require.ErrorIs(t, err, os.ErrClosed)
	require.NoError(t, w.Abort(), "Abort after Close does nothing")

	r, err := s.Open("weights.bin")
	require.NoError(t, err)
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.Equal(t, "raw bytes", string(got))

	list, err = s.List()
	require.NoError(t, err)
	require.Len(t, list, 3)
	names := []string{list[0].Name, list[1].Name, list[2].Name}
	require.Equal(t, []string{"model_epoch_4", "model_epoch_5", "weights.bin"}, names)
	require.Equal(t, SnapshotJSON, list[0].Kind)
	require.Equal(t, SnapshotRaw, list[2].Kind)
	require.Equal(t, int64(len("raw bytes")), list[2].Size)
	require.Equal(t, int64(len(b)), list[1].Size)
	for _, info := range list {
		require.True(t, info.SavedAt.After(before), info.Name)
	}

	require.NoError(t, s.Delete("model_epoch_4"))
	require.NoError(t, s.Delete("model_epoch_4"), "deleting what is gone is fine")
	require.False(t, s.Exists("model_epoch_4"))
	_, err = s.Open("model_epoch_4")
	require.ErrorIs(t, err, fs.ErrNotExist)

	// Nothing but the snapshots themselves is in the folder.
	entries, err := os.ReadDir(s.Dir())
	require.NoError(t, err)
	require.Len(t, entries, 2)
}

func TestSnapshotNames(t *testing.T) {
	s := openSnaps(t)
	for _, name := range []string{"", ".", "..", "../x", "a/b", `a\b`, "x..y", "nul\x00", strings.Repeat("n", 201)} {
		require.Error(t, s.Save(name, 1), "%q", name)
		_, err := s.Create(name)
		require.Error(t, err, "%q", name)
		_, err = s.Load(name, new(int))
		require.Error(t, err, "%q", name)
		_, err = s.Open(name)
		require.Error(t, err, "%q", name)
		require.Error(t, s.Delete(name), "%q", name)
		require.False(t, s.Exists(name))
	}
	for _, name := range []string{"a", "model_epoch_5", "weights.bin", ".hidden", ".tmp-123", "x.json", "ünïcode", strings.Repeat("n", 200)} {
		require.NoError(t, s.Save(name, name), "%q", name)
		var got string
		found, err := s.Load(name, &got)
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, name, got)
	}
	list, err := s.List()
	require.NoError(t, err)
	require.Len(t, list, 8)
	// A name that looks like a temporary file survives the cleanup.
	s2, err := OpenSnapshots(filepath.Dir(s.Dir()), WithLogger(quietLogger()))
	require.NoError(t, err)
	require.True(t, s2.Exists(".tmp-123"))
}

func TestSnapshotKindsReplaceEachOther(t *testing.T) {
	s := openSnaps(t)
	require.NoError(t, s.Save("x", map[string]int{"a": 1}))
	w, err := s.Create("x")
	require.NoError(t, err)
	_, err = io.WriteString(w, `{"a": 2}`)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	list, err := s.List()
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, SnapshotRaw, list[0].Kind)
	var v map[string]int
	found, err := s.Load("x", &v)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, 2, v["a"], "a raw snapshot of JSON loads")

	require.NoError(t, s.Save("x", map[string]int{"a": 3}))
	list, err = s.List()
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, SnapshotJSON, list[0].Kind)

	// A crash between publishing one kind and deleting the other leaves
	// both: the newer is the snapshot.
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir(), "x.raw"), []byte(`{"a": 4}`), 0o644))
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(s.Dir(), "x.json"), old, old))
	found, err = s.Load("x", &v)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, 4, v["a"])
	list, err = s.List()
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, SnapshotRaw, list[0].Kind)
	require.NoError(t, s.Delete("x"))
	require.False(t, s.Exists("x"))
}

func TestSnapshotAbortAndFailedValue(t *testing.T) {
	s := openSnaps(t)
	require.NoError(t, s.Save("m", 1))
	w, err := s.Create("m")
	require.NoError(t, err)
	_, err = w.Write([]byte("never published"))
	require.NoError(t, err)
	require.NoError(t, w.Abort())
	var v int
	_, err = s.Load("m", &v)
	require.NoError(t, err)
	require.Equal(t, 1, v)

	require.Error(t, s.Save("m", func() {}), "not JSON")
	require.Error(t, s.Save("m", panicky{}), "a panicking MarshalJSON is an error")
	_, err = s.Load("m", &v)
	require.NoError(t, err)
	require.Equal(t, 1, v)
	entries, err := os.ReadDir(s.Dir())
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left")
}

type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("no") }

// A temporary file of a live writer is left alone by another OpenSnapshots;
// one left by a dead writer (no lock on it) is removed.
func TestSnapshotTempCleanup(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSnapshots(dir, WithLogger(quietLogger()))
	require.NoError(t, err)
	w, err := s.Create("live")
	require.NoError(t, err)
	_, err = w.Write([]byte("in progress"))
	require.NoError(t, err)
	dead := filepath.Join(s.Dir(), tempPrefix+"12345")
	require.NoError(t, os.WriteFile(dead, []byte("left by a crash"), 0o644))

	_, err = OpenSnapshots(dir, WithLogger(quietLogger()))
	require.NoError(t, err)
	_, err = os.Stat(dead)
	require.ErrorIs(t, err, fs.ErrNotExist, "a dead writer's file is removed")
	require.NoError(t, w.Close(), "a live writer's file is kept")
	require.True(t, s.Exists("live"))
}

// Many goroutines save and load one name: every load sees one whole value.
func TestSnapshotConcurrentSaveLoad(t *testing.T) {
	s := openSnaps(t)
	type val struct {
		Seq int    `json:"seq"`
		Pad string `json:"pad"`
	}
	mk := func(i int) val { return val{i, strings.Repeat(fmt.Sprint(i%10), 16<<10+i)} }
	require.NoError(t, s.Save("v", mk(0)))
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 4 {
		wg.Go(func() {
			for i := range 15 {
				n := g*100 + i
				if i%3 == 0 {
					w, err := s.Create("v")
					if err != nil {
						errs <- err
						return
					}
					json.NewEncoder(w).Encode(mk(n))
					if err := w.Close(); err != nil {
						errs <- err
					}
					continue
				}
				if err := s.Save("v", mk(n)); err != nil {
					errs <- err
				}
			}
		})
		wg.Go(func() {
			for range 40 {
				var v val
				found, err := s.Load("v", &v)
				if err != nil || !found {
					errs <- fmt.Errorf("load: %v %v", found, err)
					return
				}
				if v.Pad != mk(v.Seq).Pad {
					errs <- fmt.Errorf("a mixed value: seq %d with a pad of %d bytes", v.Seq, len(v.Pad))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := s.List()
	require.NoError(t, err)
	require.Len(t, list, 1)
	entries, err := os.ReadDir(s.Dir())
	require.NoError(t, err)
	require.Len(t, entries, 1, "one file for the name, no temporary left")
}

// Saves of the two kinds race on one name, round after round: after each
// round the name has a value, one of the two written (before publishing was
// locked, each save could remove the other's new file and leave none).
func TestSnapshotKindsRaceKeepOne(t *testing.T) {
	s := openSnaps(t)
	for round := range 300 {
		var wg sync.WaitGroup
		var saveErr, rawErr error
		wg.Go(func() { saveErr = s.Save("k", round) })
		wg.Go(func() {
			w, err := s.Create("k")
			if err != nil {
				rawErr = err
				return
			}
			fmt.Fprint(w, -round)
			rawErr = w.Close()
		})
		wg.Wait()
		require.NoError(t, saveErr)
		require.NoError(t, rawErr)
		var got int
		found, err := s.Load("k", &got)
		require.NoError(t, err)
		require.True(t, found, "round %d: both saves published, yet the name has no value", round)
		require.Contains(t, []int{round, -round}, got, "round %d", round)
	}
}

// List, while saves switch a name between its two kinds, always lists it:
// a folder read between one kind's rename and the other's removal could
// otherwise pass the new file's entry and miss the old one's.
func TestSnapshotListDuringKindSwitches(t *testing.T) {
	s := openSnaps(t)
	for i := range 20 { // company, so the folder has more than one block of entries
		require.NoError(t, s.Save(fmt.Sprintf("other-%02d", i), i))
	}
	require.NoError(t, s.Save("k", 0))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				assert.NoError(t, s.Save("k", i))
				continue
			}
			w, err := s.Create("k")
			if !assert.NoError(t, err) {
				return
			}
			fmt.Fprint(w, i)
			assert.NoError(t, w.Close())
		}
	})
	defer wg.Wait()
	defer close(stop)
	for range 3000 {
		list, err := s.List()
		require.NoError(t, err)
		require.Len(t, list, 21, "a listing missed a name: %v", list)
	}
}

// patternBlock is the content of block i of a pattern stream: a fixed
// pseudo-random block stamped with its index, so a misplaced block shows.
const patternBlockSize = 64 << 10

var patternBase = func() []byte {
	b := make([]byte, patternBlockSize)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}()

func patternBlock(dst []byte, i int64) []byte {
	dst = append(dst[:0], patternBase...)
	binary.LittleEndian.PutUint64(dst, uint64(i))
	return dst
}

// patternReader yields size bytes of the pattern stream.
type patternReader struct {
	off, size int64
	blk       []byte
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	i, in := p.off/patternBlockSize, p.off%patternBlockSize
	p.blk = patternBlock(p.blk, i)
	n := copy(b, p.blk[in:min(int64(patternBlockSize), in+p.size-p.off)])
	p.off += int64(n)
	return n, nil
}

// A snapshot of 1 GiB (64 MiB with -short) is written and read back, every
// block checked, with memory that does not grow with its size: the heap
// allocated during the whole round trip stays under 4 MiB.
func TestSnapshotLargeFlatMemory(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	s := openSnaps(t)

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	w, err := s.Create("big")
	require.NoError(t, err)
	n, err := io.Copy(w, &patternReader{size: size})
	require.NoError(t, err)
	require.Equal(t, size, n)
	require.NoError(t, w.Close())
	r, err := s.Open("big")
	require.NoError(t, err)
	got := make([]byte, patternBlockSize)
	var want []byte
	var i int64
	for ; ; i++ {
		_, err := io.ReadFull(r, got)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		want = patternBlock(want, i)
		if !bytes.Equal(want, got) {
			t.Fatalf("block %d does not read back as written", i)
		}
	}
	require.Equal(t, size/patternBlockSize, i)
	require.NoError(t, r.Close())
	runtime.ReadMemStats(&m1)

	alloc := m1.TotalAlloc - m0.TotalAlloc
	t.Logf("%d MiB round trip: %d KiB allocated, heap in use %d -> %d KiB", size>>20, alloc>>10, m0.HeapInuse>>10, m1.HeapInuse>>10)
	require.Less(t, alloc, uint64(4<<20), "memory grew with the snapshot's size")
	list, err := s.List()
	require.NoError(t, err)
	require.Equal(t, size, list[0].Size)
	require.NoError(t, s.Delete("big"))
}

func TestSnapshotWriteErrorPublishesNothing(t *testing.T) {
	s := openSnaps(t)
	require.NoError(t, s.Save("x", "old"))
	w, err := s.Create("x")
	require.NoError(t, err)
	_, err = w.ReadFrom(iotestErrReader{})
	require.Error(t, err)
	require.ErrorContains(t, w.Close(), "a write failed")
	var v string
	_, err = s.Load("x", &v)
	require.NoError(t, err)
	require.Equal(t, "old", v)
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("source broke") }
