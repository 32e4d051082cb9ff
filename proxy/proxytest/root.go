package proxytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Bind is a file or directory of this machine shown at Target inside a
// Root.
type Bind struct {
	Source, Target string
	ReadOnly       bool
}

// Root is a command run with its own view of the file system, as a
// container shows one: the machine's /usr (and so its libraries and
// programs) with files and directories bound where a compose file mounts
// them, in a private mount namespace (unshare) and chroot, so that a
// configuration's absolute paths (/config, /secrets/...) are used as they
// are. It needs root (CI runs as root); elsewhere the test skips, or fails
// under CI.
func Root(t testing.TB, binds []Bind, env []string, argv ...string) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("running a program in its own root needs root")
		}
		t.Skip("running a program in its own root needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("unshare: %v", err)
	}
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		t.Fatalf("chroot: %v", err)
	}
	mountBin, err := exec.LookPath("mount")
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	root := t.TempDir()
	for _, d := range []string{"usr", "tmp", "dev", "etc", "proc"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	for _, l := range []string{"lib", "lib64", "bin", "sbin"} { // merged /usr, as Debian 12
		os.Symlink("usr/"+l, filepath.Join(root, l))
	}
	var script strings.Builder
	script.WriteString("set -e\n" + shq(mountBin) + " --make-rprivate /\n")
	mount := func(src, dst string, ro bool) {
		script.WriteString(shq(mountBin) + " --bind " + shq(src) + " " + shq(filepath.Join(root, dst)) + "\n")
		if ro {
			script.WriteString(shq(mountBin) + " -o remount,bind,ro " + shq(filepath.Join(root, dst)) + "\n")
		}
	}
	mount("/usr", "usr", true)
	mount("/dev", "dev", false)
	// /etc is the root's own (so that binds may land in it), with the
	// machine's trust store and the few files programs read.
	for _, f := range []string{"nsswitch.conf", "passwd", "group", "localtime", "resolv.conf", "mime.types"} {
		if b, err := os.ReadFile(filepath.Join("/etc", f)); err == nil {
			os.WriteFile(filepath.Join(root, "etc", f), b, 0o644)
		}
	}
	for _, d := range []string{"ssl", "ca-certificates"} {
		if _, err := os.Stat(filepath.Join("/etc", d)); err == nil {
			os.MkdirAll(filepath.Join(root, "etc", d), 0o755)
			mount(filepath.Join("/etc", d), filepath.Join("etc", d), true)
		}
	}
	for _, b := range binds {
		target := filepath.Join(root, b.Target)
		if fi, err := os.Stat(b.Source); err == nil && !fi.IsDir() {
			os.MkdirAll(filepath.Dir(target), 0o755)
			os.WriteFile(target, nil, 0o600)
		} else {
			os.MkdirAll(target, 0o755)
		}
		mount(b.Source, b.Target, b.ReadOnly)
	}
	script.WriteString("exec " + shq(chroot) + " " + shq(root))
	for _, a := range argv {
		script.WriteString(" " + shq(a))
	}
	script.WriteString("\n")
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script.String())
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/tmp"}, env...)
	return cmd
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
