package postgres

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"

	"github.com/checkpoint-go/checkpoint/postgres/pgtest"
)

// One throwaway cluster serves the whole test binary. Without the server's
// programs the tests skip, except under CI (CI=true), where they fail.
var (
	cluster  *pgtest.Cluster
	startErr error
	dbs      atomic.Int64
)

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		os.Exit(workerMain())
	}
	cluster, startErr = pgtest.Start()
	if startErr != nil && os.Getenv("CI") == "true" {
		fmt.Fprintf(os.Stderr, "FAIL: CI=true and no Postgres for the tests: %v\n", startErr)
		os.Exit(1)
	}
	code := m.Run()
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// newDB returns the URL of a new, empty database.
func newDB(t testing.TB) string {
	t.Helper()
	if startErr != nil {
		t.Skipf("no Postgres to test with (set CI=true to make this fail): %v", startErr)
	}
	url, err := cluster.CreateDB(fmt.Sprintf("t%d", dbs.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// openStore opens a Store on a new database, closed at the end of the test.
func openStore(t testing.TB, url string) *Store {
	t.Helper()
	if url == "" {
		url = newDB(t)
	}
	s, err := Open(context.Background(), url, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
