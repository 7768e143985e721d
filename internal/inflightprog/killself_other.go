//go:build !unix

package main

import "os"

// killSelf dies at once, as an OOM kill would. Without SIGKILL, the process
// kills itself (TerminateProcess on Windows): no deferred call runs. The
// exit is the fallback if the kill is refused.
func killSelf() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		p.Kill()
	}
	os.Exit(137)
}
