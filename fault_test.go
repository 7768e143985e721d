package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// faultyFile is a journal file that fails on demand: each armed fault hits
// the next call of its kind once.
type faultyFile struct {
	*os.File
	mu       sync.Mutex
	writeErr error // the next Write writes half its bytes, then fails
	truncErr error
	syncErr  error
	syncs    int
	afterUse bool // a call came after Close
	closed   bool
}

func (f *faultyFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	err := f.writeErr
	f.writeErr = nil
	f.mu.Unlock()
	if err != nil {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, err
	}
	return f.File.Write(p)
}

func (f *faultyFile) Truncate(size int64) error {
	f.mu.Lock()
	err := f.truncErr
	f.truncErr = nil
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.File.Truncate(size)
}

func (f *faultyFile) Sync() error {
	f.mu.Lock()
	err := f.syncErr
	f.syncErr = nil
	f.syncs++
	f.afterUse = f.afterUse || f.closed
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultyFile) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return f.File.Close()
}

func (f *faultyFile) arm(fn func(f *faultyFile)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *faultyFile) syncCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs
}

// withFaultyFiles puts a faultyFile behind each journal and records them by
// their suffix ("_results.jsonl", "_errors.jsonl").
func withFaultyFiles(files map[string]*faultyFile) Option {
	return func(o *options) {
		o.wrapFile = func(f appendFile) appendFile {
			ff := &faultyFile{File: f.(*os.File)}
			name := f.(*os.File).Name()
			files[name[strings.LastIndexByte(name, '_'):]] = ff
			return ff
		}
	}
}

func withRename(fn func(oldpath, newpath string) error) Option {
	return func(o *options) { o.rename = fn }
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func faultResult(i int) map[string]any {
	return map[string]any{"n": i, "pad": strings.Repeat("x", 200+i)}
}

// checkJournalLines checks that a journal is made of whole records only.
func checkJournalLines(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	require.NoError(t, err)
	if len(b) == 0 {
		return
	}
	require.Equal(t, byte('\n'), b[len(b)-1], "%s ends in a partial line", path)
	for i, line := range bytes.Split(b[:len(b)-1], []byte{'\n'}) {
		_, ok := parseRecord(line)
		require.True(t, ok && json.Valid(line), "%s line %d is not a whole record: %.80q", path, i+1, line)
	}
}

// TestWriteAndSyncFaults makes a journal's disk fail in the middle of a save
// and checks that the save reports it, later records land on a fresh line,
// and a reopen sees every record whose save returned nil and no half record.
func TestWriteAndSyncFaults(t *testing.T) {
	cases := []struct {
		name   string
		policy SyncPolicy
		arm    func(f *faultyFile)
		want   error
		// kept: the failed record was wholly written (only its fsync
		// failed), so it is in the checkpoint even though its save failed.
		kept bool
	}{
		{"write fails half-way with ENOSPC", SyncNone, func(f *faultyFile) { f.writeErr = syscall.ENOSPC }, syscall.ENOSPC, false},
		{"write fails half-way with EIO", SyncNone, func(f *faultyFile) { f.writeErr = syscall.EIO }, syscall.EIO, false},
		{"write fails half-way, then cutting the half line fails", SyncNone,
			func(f *faultyFile) { f.writeErr, f.truncErr = syscall.EIO, syscall.EIO }, syscall.EIO, false},
		{"write fails half-way under SyncAlways", SyncAlways, func(f *faultyFile) { f.writeErr = syscall.ENOSPC }, syscall.ENOSPC, false},
		{"fsync fails under SyncAlways", SyncAlways, func(f *faultyFile) { f.syncErr = syscall.EIO }, syscall.EIO, true},
	}
	for _, tc := range cases {
		for _, journal := range []string{"_results.jsonl", "_errors.jsonl"} {
			t.Run(tc.name+"/"+journal, func(t *testing.T) {
				dir := t.TempDir()
				files := map[string]*faultyFile{}
				r, err := Open[int, string]("job", WithDir(dir), WithSync(tc.policy), withFaultyFiles(files), WithLogger(quietLogger()))
				require.NoError(t, err)
				save := func(i int) error {
					if journal == "_errors.jsonl" {
						return r.SaveError(i, fmt.Errorf("error %d: %s", i, strings.Repeat("e", 200+i)))
					}
					return r.SaveResult(i, faultResult(i))
				}
				for i := range 10 {
					require.NoError(t, save(i))
				}
				files[journal].arm(tc.arm)
				err = save(10)
				require.ErrorIs(t, err, tc.want)
				assert.Contains(t, err.Error(), journal, "the error names the file")
				for i := 11; i < 20; i++ {
					require.NoError(t, save(i), "a save after the fault")
				}
				require.NoError(t, r.Close())

				for _, j := range []string{"_results.jsonl", "_errors.jsonl"} {
					checkJournalLines(t, filepath.Join(dir, "job"+j))
				}
				r, err = Open[int, string]("job", WithDir(dir), WithLogger(quietLogger()))
				require.NoError(t, err)
				defer r.Close()
				failed := map[int]string{}
				for _, f := range r.AllErrors() {
					failed[f.Key] = f.Error
				}
				for i := range 20 {
					want := i != 10 || tc.kept
					if journal == "_errors.jsonl" {
						msg, ok := failed[i]
						require.Equal(t, want, ok, "key %d in AllErrors", i)
						if ok {
							assert.Equal(t, fmt.Sprintf("error %d: %s", i, strings.Repeat("e", 200+i)), msg)
						}
						continue
					}
					var got map[string]any
					found, err := r.Result(i, &got)
					require.NoError(t, err)
					require.Equal(t, want, found, "key %d completed", i)
					if found {
						assert.Equal(t, float64(i), got["n"])
						assert.Equal(t, strings.Repeat("x", 200+i), got["pad"])
					}
				}
			})
		}
	}
}

// TestCloseSyncFaults: a failed fsync at Close, or an earlier failed
// background fsync of SyncInterval, is returned by Close; the records stay.
func TestCloseSyncFaults(t *testing.T) {
	cases := []struct {
		name   string
		policy SyncPolicy
		arm    func(f *faultyFile)
		wait   bool // for the background sync to have run
	}{
		{"final fsync fails", SyncNone, func(f *faultyFile) { f.syncErr = syscall.EIO }, false},
		{"background fsync fails", SyncInterval(time.Millisecond), func(f *faultyFile) { f.syncErr = syscall.EIO }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]*faultyFile{}
			var logs bytes.Buffer
			r, err := Open[int, string]("job", WithDir(dir), WithSync(tc.policy), withFaultyFiles(files),
				WithLogger(slog.New(slog.NewTextHandler(&lockedWriter{w: &logs}, nil))))
			require.NoError(t, err)
			files["_results.jsonl"].arm(tc.arm)
			for i := range 5 {
				require.NoError(t, r.SaveResult(i, faultResult(i)))
			}
			if tc.wait {
				require.Eventually(t, func() bool { return files["_results.jsonl"].syncCount() > 0 },
					10*time.Second, time.Millisecond)
			}
			err = r.Close()
			require.ErrorIs(t, err, syscall.EIO)
			assert.Contains(t, err.Error(), "_results.jsonl")
			if tc.wait {
				assert.Contains(t, logs.String(), "background sync failed")
			}
			r, err = Open[int, string]("job", WithDir(dir), WithLogger(quietLogger()))
			require.NoError(t, err)
			defer r.Close()
			done, _ := r.Progress()
			assert.Equal(t, 5, done)
		})
	}
}

// lockedWriter lets a logger write from several goroutines into a buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestMetaRenameFault: when the meta file cannot be replaced, the old one
// stays whole, no temporary file is left, and no record is touched. Saves
// still return nil: their records are safe in the journal, and the meta is
// only a summary that Open rebuilds. Close and Clear report the failure.
func TestMetaRenameFault(t *testing.T) {
	dir := t.TempDir()
	var failing sync.Map // set: the rename fails
	rename := func(oldpath, newpath string) error {
		if _, ok := failing.Load("on"); ok {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.EIO}
		}
		return os.Rename(oldpath, newpath)
	}
	r, err := Open[int, string]("job", WithDir(dir), withRename(rename), WithLogger(quietLogger()))
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, r.SaveResult(i, faultResult(i)))
	}
	require.NoError(t, r.writeMeta())
	metaPath := filepath.Join(dir, "job_meta.json")
	before, err := os.ReadFile(metaPath)
	require.NoError(t, err)

	failing.Store("on", true)
	for i := 3; i < 6; i++ {
		require.NoError(t, r.SaveResult(i, faultResult(i)), "the record is safe; the meta is best effort on saves")
	}
	require.ErrorIs(t, r.writeMeta(), syscall.EIO)
	err = r.Close()
	require.ErrorIs(t, err, syscall.EIO, "Close reports that the meta could not be written")

	after, err := os.ReadFile(metaPath)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the old meta file is untouched")
	checkMetaFile(t, after)
	tmps, _ := filepath.Glob(metaPath + ".tmp-*")
	assert.Empty(t, tmps, "a failed rename leaves no temporary file")

	r, err = Open[int, string]("job", WithDir(dir), WithLogger(quietLogger()))
	require.NoError(t, err)
	done, _ := r.Progress()
	assert.Equal(t, 6, done)
	require.NoError(t, r.Close())
}

// TestRepairFault: if Open cannot cut a torn tail, it fails and leaves the
// file as it was; the next Open repairs it and loses nothing.
func TestRepairFault(t *testing.T) {
	dir := t.TempDir()
	r, err := Open[int, string]("job", WithDir(dir), WithLogger(quietLogger()))
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, r.SaveResult(i, faultResult(i)))
	}
	require.NoError(t, r.Close())
	path := filepath.Join(dir, "job_results.jsonl")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"key":3,"result":{"n":3,"pad":"xx`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	torn, err := os.ReadFile(path)
	require.NoError(t, err)

	failTruncate := func(o *options) {
		o.wrapFile = func(f appendFile) appendFile {
			return &faultyFile{File: f.(*os.File), truncErr: syscall.EIO}
		}
	}
	_, err = Open[int, string]("job", WithDir(dir), failTruncate, WithLogger(quietLogger()))
	require.ErrorIs(t, err, syscall.EIO)
	now, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, torn, now, "a failed repair leaves the journal as it was")

	r, err = Open[int, string]("job", WithDir(dir), WithLogger(quietLogger()))
	require.NoError(t, err)
	defer r.Close()
	done, _ := r.Progress()
	assert.Equal(t, 3, done)
	checkJournalLines(t, path)
}
