package server

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// testserveBinary builds internal/testserve (the server with a fake
// generator) once per test run, with the test's own build settings so that
// the packages compiled for the test are reused.
func testserveBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "zimage-testserve-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "testserve")
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		cmd := exec.Command(goBin, "build", "-o", binPath, "./internal/testserve")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build testserve: %v\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// proc is a server running as a separate process.
type proc struct {
	cmd    *exec.Cmd
	url    string
	stderr *strings.Builder
	exited chan struct{} // closed when the process has exited
	err    error         // its exit status, once exited
}

// startProc runs testserve with args and waits until it listens.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(testserveBinary(t), args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	p := &proc{cmd: cmd, stderr: &strings.Builder{}, exited: make(chan struct{})}
	cmd.Stderr = &lockedWriter{b: p.stderr}
	require.NoError(t, cmd.Start())
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // fails harmlessly when it already exited
		<-p.exited
	})
	select {
	case l := <-lines:
		addr, ok := strings.CutPrefix(l, "listening ")
		require.True(t, ok, "unexpected output %q", l)
		p.url = "http://" + addr
	case <-p.exited:
		t.Fatalf("testserve exited: %v\n%s", p.err, p.stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("testserve did not start\n%s", p.stderr.String())
	}
	return p
}

// kill ends the process with SIGKILL: no shutdown code runs.
func (p *proc) kill(t *testing.T) {
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.exited
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
		require.NoError(t, p.err, "exit after SIGTERM\n%s", p.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit 30s after SIGTERM")
	}
}

type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// execLog counts the lines "TASK INDEX PID" that testserve appends per image.
func execLog(t *testing.T, path string) (perTask map[string]int, perPID map[string]int) {
	t.Helper()
	perTask, perPID = map[string]int{}, map[string]int{}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return
	}
	require.NoError(t, err)
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		perTask[f[0]]++
		perPID[f[2]]++
	}
	return
}

// remote is a client of a server in another process.
type remote struct {
	t   *testing.T
	url string
}

func (r remote) submit(key, prompt string) string {
	e := &testEnv{t: r.t, url: r.url}
	return e.submitOK(key, prompt)
}

func (r remote) waitDone(key, id string) statusResp {
	e := &testEnv{t: r.t, url: r.url}
	return e.waitDone(key, id)
}

// TestCrashRestart kills the server process (SIGKILL) while tasks are
// queued and one is running, restarts it on the same data directory, and
// checks that every task then succeeds and is charged exactly once.
func TestCrashRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a subprocess")
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "exec.log")
	ctx := context.Background()
	st, err := OpenStore(ctx, dir, "")
	require.NoError(t, err)
	key, info, err := st.AddKey(ctx, "crash", 1000, 0)
	require.NoError(t, err)
	require.NoError(t, st.Close())

	args := []string{"--data", dir, "--delay", "250ms", "--log", logPath}
	p := startProc(t, args...)
	r := remote{t, p.url}
	const n = 10
	var ids []string
	for i := range n {
		ids = append(ids, r.submit(key, fmt.Sprintf("task %d", i)))
	}
	// Let a few finish, then kill it in the middle of the queue.
	require.Eventually(t, func() bool {
		perTask, _ := execLog(t, logPath)
		return len(perTask) >= 3
	}, 30*time.Second, 10*time.Millisecond)
	p.kill(t)
	before, _ := execLog(t, logPath)
	require.Less(t, len(before), n, "the kill came too late to test anything")
	t.Logf("killed after %d of %d tasks", len(before), n)

	p2 := startProc(t, args...)
	r = remote{t, p2.url}
	for _, id := range ids {
		s := r.waitDone(key, id)
		require.Equal(t, "SUCCESS", s.Status, "%s: %s", id, s.ErrorMessage)
		require.Equal(t, int64(10), s.ConsumedCredits)
	}
	p2.stop(t)

	perTask, _ := execLog(t, logPath)
	rerun := 0
	for _, id := range ids {
		switch perTask[id] {
		case 1:
		case 2:
			rerun++ // killed after generating, before the commit: run again
		default:
			t.Errorf("task %s generated %d times", id, perTask[id])
		}
	}
	require.LessOrEqual(t, rerun, 1, "only the task running at the kill may run twice")

	st, err = OpenStore(ctx, dir, "")
	require.NoError(t, err)
	defer st.Close()
	k, err := st.Key(ctx, info.ID)
	require.NoError(t, err)
	require.Equal(t, int64(1000-n*10), k.Credits, "each task charged once")
	require.Equal(t, int64(0), k.Reserved)
	for _, id := range ids {
		require.Equal(t, int64(1), charges(t, st.db.q, id))
	}
}

// TestSigtermFinishesRunningTask checks the graceful path: SIGTERM lets
// the running task finish (within the shutdown timeout) before exiting.
func TestSigtermFinishesRunningTask(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a subprocess")
	}
	dir := t.TempDir()
	ctx := context.Background()
	st, err := OpenStore(ctx, dir, "")
	require.NoError(t, err)
	key, _, err := st.AddKey(ctx, "term", 1000, 0)
	require.NoError(t, err)
	require.NoError(t, st.Close())

	logPath := filepath.Join(dir, "exec.log")
	p := startProc(t, "--data", dir, "--delay", "1s", "--log", logPath)
	r := remote{t, p.url}
	id := r.submit(key, "slow one")
	queued := r.submit(key, "waits")
	st, err = OpenStore(ctx, dir, "") // beside the running server, as the keys command does
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		tk, err := getTask(ctx, st.db.q, id)
		return err == nil && tk.State == stateRunning
	}, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, st.Close())
	p.stop(t)
	perTask, _ := execLog(t, logPath)
	require.Equal(t, 1, perTask[id], "the running task finished before exit")
	require.Equal(t, 0, perTask[queued], "the queued one was left queued")

	p2 := startProc(t, "--data", dir, "--delay", "10ms", "--log", logPath)
	r = remote{t, p2.url}
	require.Equal(t, "SUCCESS", r.waitDone(key, id).Status)
	require.Equal(t, "SUCCESS", r.waitDone(key, queued).Status)
	p2.stop(t)
}
