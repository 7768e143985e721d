//go:build !unix

package pgtest

import "os/exec"

// credential is the user the server runs as when the tests run as root: on
// systems without Unix credentials the commands run as the caller.
type credential struct{ uid, gid int }

func newCredential(uid, gid int) *credential { return &credential{uid, gid} }

func runAs(*exec.Cmd, *credential) {}
