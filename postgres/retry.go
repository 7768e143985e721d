package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// retry runs fn until it succeeds, fails with an error that retrying cannot
// cure, ctx ends, or s.retryFor has passed since the first failure. Each
// try takes a connection from the pool afresh, so a restarted server or a cut
// connection is reconnected to.
//
// Every statement retried this way must be safe to run twice, since the
// first may have committed before its answer was lost: claims and renewals
// are, and saves carry an id that makes a repeat count once.
func (s *Store) retry(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	var first time.Time
	wait := 20 * time.Millisecond
	for {
		err := fn(ctx)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			if err == nil && !first.IsZero() {
				s.log.Info("postgres: connection back", "op", op, "after", time.Since(first).Round(time.Millisecond))
			}
			return err
		}
		if s.retryFor <= 0 {
			return err
		}
		if first.IsZero() {
			first = time.Now()
			s.log.Warn("postgres: lost the connection; retrying", "op", op, "for", s.retryFor, "err", err)
		} else if time.Since(first) > s.retryFor {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// retryable reports whether err is a lost or refused connection, or a
// conflict that a second try resolves, rather than a fault in the statement.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "57P01", // admin_shutdown, e.g. pg_terminate_backend
			pe.Code == "57P02", // crash_shutdown
			pe.Code == "57P03", // cannot_connect_now: starting up or shutting down
			pe.Code == "53300", // too_many_connections
			pe.Code == "40001", // serialization_failure
			pe.Code == "40P01": // deadlock_detected
			return true
		}
		return false
	}
	// Not a server's answer: the connection, or getting one.
	var ne net.Error
	var ce *pgconn.ConnectError
	if pgconn.SafeToRetry(err) || errors.As(err, &ne) || errors.As(err, &ce) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "unexpected EOF") ||
		strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}

// Redact returns connString with its password, if any, replaced by "xxxxx",
// for logs and messages.
func Redact(connString string) string {
	if u, err := url.Parse(connString); err == nil && u.Scheme != "" && strings.HasPrefix(u.Scheme, "postgres") {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	// key=value form
	fields := strings.Fields(connString)
	for i, f := range fields {
		if strings.HasPrefix(strings.ToLower(f), "password=") {
			fields[i] = "password=xxxxx"
		}
	}
	return strings.Join(fields, " ")
}
