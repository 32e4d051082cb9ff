package proxytest

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is a program a test started, with what it printed.
type Process struct {
	Cmd  *exec.Cmd
	Done chan struct{} // closed when it exited
	out  *SyncBuffer
}

// Output is what the program printed so far.
func (p *Process) Output() string { return p.out.String() }

// Start starts cmd in a process group of its own and stops the whole
// group (SIGTERM, then SIGKILL after 10 s) when the test ends, so that
// nothing it started outlives the test.
func Start(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Cmd: cmd, Done: make(chan struct{}), out: &SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.Done) }()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.Done:
		case <-time.After(10 * time.Second):
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.Done
	})
	return p
}
