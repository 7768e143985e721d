package postgres

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/checkpoint-go/checkpoint"
)

// Files -> Postgres -> files: a job moves from one machine to many and
// back, and the file runner at the end sees what the first one saved.
func TestImportExportRoundTrip(t *testing.T) {
	s := openStore(t, "")
	ctx := context.Background()
	src := t.TempDir()
	fr, err := checkpoint.Open[string, string]("job", checkpoint.WithDir(src), checkpoint.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	fr.SaveResult("a", map[string]any{"n": 1})
	fr.SaveError("b", errors.New("first"))
	fr.SaveError("b", errors.New("second"))
	fr.SaveError("c", errors.New("then fixed"))
	fr.SaveResult("c", "ok")
	fr.SaveResult(`caf\u00e9 "quoted"`, 3)
	fr.SaveResult("é", 4)
	fr.Close()

	st, err := Import(ctx, s, src, "job", ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Completed != 4 || st.Failed != 1 {
		t.Fatalf("import %+v", st)
	}
	pr := open[string](t, s, "job", checkpoint.WithMaxAttempts(3))
	if got := slices.Collect(pr.Iterate([]string{"a", "b", "c", "é", "d"}, ident)); !slices.Equal(got, []string{"b", "d"}) {
		t.Fatalf("after import a Postgres runner yields %q, want b and d", got)
	}
	if f := pr.AllErrors(); len(f) != 1 || f[0].Attempts != 2 || f[0].Error != "second" {
		t.Fatalf("AllErrors %+v", f)
	}
	pr.SaveResult("d", "from postgres")
	pr.Close()

	dst := t.TempDir()
	if _, err := Export(ctx, s, "job", dst); err != nil {
		t.Fatal(err)
	}
	if _, err := Export(ctx, s, "job", dst); err == nil {
		t.Fatal("a second export over the files did not fail")
	}
	back, err := checkpoint.Open[string, string]("job", checkpoint.WithDir(dst), checkpoint.WithLogger(quiet), checkpoint.WithMaxAttempts(3))
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if done, _ := back.Progress(); done != 5 {
		t.Fatalf("exported files hold %d completed keys, want 5", done)
	}
	var v string
	if found, err := back.Result("d", &v); !found || err != nil || v != "from postgres" {
		t.Fatalf("Result(d) = %v %v %q", found, err, v)
	}
	if f := back.AllErrors(); len(f) != 1 || f[0].Key != "b" || f[0].Attempts != 2 {
		t.Fatalf("exported errors %+v", f)
	}
}

// The Python library's sample (keys as strings, naive timestamps,
// json.dumps spacing, \u escapes) imports with its keys as numbers.
func TestImportPythonSample(t *testing.T) {
	s := openStore(t, "")
	dir := t.TempDir()
	for _, f := range []string{"sample_results.jsonl", "sample_errors.jsonl", "sample_meta.json"} {
		b, err := os.ReadFile(filepath.Join("..", "checkpoints", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	want, err := checkpoint.Open[int, int]("sample", checkpoint.WithDir(dir), checkpoint.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	wantDone, _ := want.Progress()
	wantFailed := len(want.AllErrors())
	want.Close()

	st, err := Import(context.Background(), s, dir, "sample", ImportOptions{NumberKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Completed != wantDone || st.Failed != wantFailed {
		t.Fatalf("imported %+v; the file runner sees %d completed, %d failed", st, wantDone, wantFailed)
	}
	r := open[int](t, s, "sample")
	if done, _ := r.Progress(); done != wantDone {
		t.Fatalf("Postgres runner sees %d completed, want %d", done, wantDone)
	}
	var res map[string]any
	if found, err := r.Result(2, &res); !found || err != nil || res["label"] != "café" {
		t.Fatalf("Result(2) = %v %v %v", found, err, res)
	}
}
