package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/checkpoint-go/checkpoint/postgres/pgtest"
)

var (
	cluster  *pgtest.Cluster
	startErr error
)

func TestMain(m *testing.M) {
	cluster, startErr = pgtest.Start()
	if startErr != nil && os.Getenv("CI") == "true" {
		fmt.Fprintf(os.Stderr, "FAIL: CI=true and no Postgres for the tests: %v\n", startErr)
		os.Exit(1)
	}
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	os.Exit(code)
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

// The Python sample goes into Postgres and comes back out as files.
func TestImportThenExport(t *testing.T) {
	if startErr != nil {
		t.Skipf("no Postgres (set CI=true to make this fail): %v", startErr)
	}
	url, err := cluster.CreateDB("cmd")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join("..", "..", "..", "checkpoints")
	code, out, errOut := runCmd("import", "--number-keys", "--dir", src, "--db", url, "sample")
	if code != 0 || !strings.Contains(out, `imported "sample"`) || !strings.Contains(out, "4 completed keys") {
		t.Fatalf("import: %d %q %q", code, out, errOut)
	}
	dst := t.TempDir()
	code, out, errOut = runCmd("export", "--json", "--dir", dst, "--db", url, "sample")
	if code != 0 || !strings.Contains(out, `"results":4`) {
		t.Fatalf("export: %d %q %q", code, out, errOut)
	}
	b, err := os.ReadFile(filepath.Join(dst, "sample_results.jsonl"))
	if err != nil || strings.Count(string(b), "\n") != 4 {
		t.Fatalf("exported results: %v\n%s", err, b)
	}
}

func TestUsageAndSecrets(t *testing.T) {
	if code, _, _ := runCmd("export", "x"); code != 2 && os.Getenv("CHECKPOINT_DB") == "" {
		t.Fatalf("export without --db: exit %d, want 2", code)
	}
	if code, _, _ := runCmd("import"); code != 2 {
		t.Fatalf("import without a name: exit %d, want 2", code)
	}
	code, out, errOut := runCmd("export", "--db", "postgres://me:hunter2@127.0.0.1:1/db?connect_timeout=1", "x")
	if code != 1 || strings.Contains(out+errOut, "hunter2") {
		t.Fatalf("exit %d; output shows the password or is wrong: %q %q", code, out, errOut)
	}
}
