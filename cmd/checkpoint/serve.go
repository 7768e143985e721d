package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// defaultServeAddr is loopback: the page shows results and error messages,
// which are nobody else's business unless the user says so.
const defaultServeAddr = "127.0.0.1:7878"

func newServeCmd(e *env) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve a web view of the checkpoints in --dir or --db (read-only)",
		Long: `serve starts a web server with a view of every checkpoint in --dir: the
Experiments table (live while jobs run), one experiment's progress, failures
and results, and a comparison of two or more experiments.

It only reads: it never takes a checkpoint's lock and never changes a file,
so it is safe beside running jobs. It listens on 127.0.0.1 unless told
otherwise; another address needs --allow-remote, and then every request
must carry a token (--token, or one generated and printed at start).`,
		Example: `  checkpoint serve --dir checkpoints
  checkpoint serve --dir runs --addr 127.0.0.1:9000
  checkpoint serve --db postgres://me@db.internal/jobs      # checkpoints kept in Postgres
  checkpoint serve --addr 0.0.0.0:7878 --allow-remote          # prints a token
  checkpoint serve --addr 0.0.0.0:7878 --allow-remote --token "$TOKEN"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.dir = e.dir
			return serve(cmd.Context(), e, o)
		},
	}
	cmd.Flags().StringVar(&o.addr, "addr", defaultServeAddr, "host:port to listen on")
	cmd.Flags().BoolVar(&o.allowRemote, "allow-remote", false, "allow an address other than loopback (requires a token)")
	cmd.Flags().StringVar(&o.token, "token", "", "token every request must carry (generated when --allow-remote is given without one)")
	return cmd
}

type serveOptions struct {
	dir         string
	addr        string
	allowRemote bool
	token       string
	// loopback is set by checkAddr: the server then also refuses requests
	// whose Host is not a loopback name (DNS rebinding).
	loopback bool
}

// checkAddr refuses a non-loopback address without --allow-remote and makes
// a token for one that has no token.
func (o *serveOptions) checkAddr() error {
	host, _, err := net.SplitHostPort(o.addr)
	if err != nil {
		return usagef("--addr %q: %v", o.addr, err)
	}
	o.loopback = isLoopbackHost(host)
	if o.loopback {
		return nil
	}
	if !o.allowRemote {
		return usagef("--addr %q is not a loopback address: anyone who reaches it could read every result; add --allow-remote (a token is then required) or use 127.0.0.1", o.addr)
	}
	if o.token == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		o.token = hex.EncodeToString(b)
	}
	return nil
}

// isLoopbackHost is true for localhost and loopback IPs; an empty host (all
// interfaces) is not loopback.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func serve(ctx context.Context, e *env, o serveOptions) error {
	if err := o.checkAddr(); err != nil {
		return err
	}
	src, err := e.openSource(ctx, o.dir) // the folder, or a database (serve_pg.go)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer src.Close()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	url := "http://" + ln.Addr().String() + "/"
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		// All interfaces: name the machine, not [::].
		if h, err := os.Hostname(); err == nil {
			url = "http://" + net.JoinHostPort(h, strconv.Itoa(tcp.Port)) + "/"
		}
	}
	if o.loopback {
		fmt.Fprintf(e.stdout, "Serving %s read-only at %s\nListening on loopback only: reachable from this machine, not from the network.\n", e.where(), url)
	} else {
		fmt.Fprintf(e.stdout, "Serving %s read-only at %s?token=%s\nListening on %s, reachable from the network: every request needs the token.\n", e.where(), url, o.token, ln.Addr())
	}
	if o.token != "" && o.loopback {
		fmt.Fprintf(e.stdout, "Open %s?token=%s\n", url, o.token)
	}
	fmt.Fprintln(e.stdout, "Press Ctrl-C to stop.")
	srv := &http.Server{
		Handler:           newServeHandler(src, o),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
