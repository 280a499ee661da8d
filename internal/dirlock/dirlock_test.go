package dirlock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The lock is a flock, which a process holds on its open file description:
// the second holder is another process (this test binary re-run), as it is
// for two `tern serve`.
func TestMain(m *testing.M) {
	if dir := os.Getenv("DIRLOCK_TEST_HOLD"); dir != "" {
		l, err := Acquire(dir)
		if err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(3)
		}
		os.Stdout.WriteString("held\n")
		// Hold until stdin closes (the test ends or kills us).
		b := make([]byte, 1)
		os.Stdin.Read(b)
		l.Release()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holder starts a process that holds dir's lock and returns it once it
// said so.
func holder(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DIRLOCK_TEST_HOLD="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if got := string(buf[:n]); got != "held\n" {
		t.Fatalf("holder said %q", got)
	}
	return cmd
}

func TestSecondHolderIsRefusedWithThePID(t *testing.T) {
	dir := t.TempDir()
	h := holder(t, dir)
	_, err := Acquire(dir)
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrHeld) {
		t.Fatalf("Acquire while held: %v, want a HeldError", err)
	}
	if held.PID != h.Process.Pid || held.Dir != dir {
		t.Errorf("HeldError = %+v, want pid %d dir %s", held, h.Process.Pid, dir)
	}
	for _, want := range []string{dir, "process " + strconv.Itoa(h.Process.Pid), "--data-dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// The refused attempt changed nothing: the holder's pid is still in the file.
	b, _ := os.ReadFile(filepath.Join(dir, File))
	if strings.TrimSpace(string(b)) != strconv.Itoa(h.Process.Pid) {
		t.Errorf("lock file holds %q after a refused attempt", b)
	}
}

func TestKilledHolderFreesTheDir(t *testing.T) {
	dir := t.TempDir()
	h := holder(t, dir)
	h.Process.Kill()
	h.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := Acquire(dir)
		if err == nil {
			l.Release()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Acquire after the holder was killed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReleaseLetsTheNextOneIn(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, File))
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want this pid", b)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}
