package hub

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

// Snapshot is a revision of a repository present in the cache.
type Snapshot struct {
	Ref    Ref
	Commit string
	Dir    string   // <cache>/models--Org--Name/snapshots/<commit>
	Files  []string // repository paths the selection asked for (after a pull)
	// Downloaded is the number of bytes this call transferred (0 when the
	// cache already had everything).
	Downloaded int64
}

// Selection chooses the files of a repository a pull fetches. First picks
// by name among the repository's files (configs, shard indexes, tokenizer
// files); Then, called with the snapshot directory once those are on disk,
// returns the further files to fetch (e.g. the shards an index names).
// Complete checks a cached snapshot without the network.
type Selection struct {
	First    func(file string) bool
	Then     func(dir string, files []string) ([]string, error)
	Complete func(dir string) error
}

// AllFiles selects every file of the repository.
var AllFiles = Selection{First: func(string) bool { return true }}

// Cached returns the snapshot of ref in the cache without any network
// access: the commit comes from ref's revision when it is a commit hash,
// otherwise from refs/<revision>; sel.Complete (if set) must accept it.
func (c *Client) Cached(ref Ref, sel Selection) (*Snapshot, error) {
	notCached := func(reason string) error {
		e := &NotCachedError{Ref: ref, CacheDir: c.CacheDir, Reason: reason}
		if c.Offline {
			e.Err = ErrOffline
		}
		return e
	}
	commit := ref.rev()
	if !commitRe.MatchString(commit) {
		var err error
		if commit, err = c.readRef(ref.Repo, ref.rev()); err != nil {
			return nil, err
		}
		if commit == "" {
			return nil, notCached("no refs/" + ref.rev())
		}
	}
	dir := c.SnapshotDir(ref.Repo, commit)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, notCached("no snapshot " + commit)
	}
	if sel.Complete != nil {
		if err := sel.Complete(dir); err != nil {
			return nil, notCached(fmt.Sprintf("snapshot %s is incomplete: %v", commit, err))
		}
	}
	return &Snapshot{Ref: ref, Commit: commit, Dir: dir}, nil
}

// Resolve returns the cached snapshot of ref when it is complete (no
// request is made) and pulls it otherwise; offline, a missing snapshot is
// a *NotCachedError wrapping ErrOffline.
func (c *Client) Resolve(ctx context.Context, ref Ref, sel Selection) (*Snapshot, error) {
	s, err := c.Cached(ref, sel)
	if err == nil || c.Offline {
		return s, err
	}
	var nc *NotCachedError
	if !errors.As(err, &nc) {
		return nil, err
	}
	c.logger().Info("hub: not in the cache, downloading", "ref", ref.String(), "reason", nc.Reason)
	return c.Pull(ctx, ref, sel)
}

// Pull asks the hub for the current commit of ref and downloads the
// selected files that the cache lacks, then records the commit under
// refs/<revision>. Offline, it is Cached.
func (c *Client) Pull(ctx context.Context, ref Ref, sel Selection) (*Snapshot, error) {
	if c.Offline {
		return c.Cached(ref, sel)
	}
	info, err := c.revision(ctx, ref)
	if err != nil {
		return nil, err
	}
	commit := info.SHA
	snap := &Snapshot{Ref: ref, Commit: commit, Dir: c.SnapshotDir(ref.Repo, commit)}
	var all []string
	for _, s := range info.Siblings {
		if localPath(s.RFilename) {
			all = append(all, s.RFilename)
		}
	}
	sort.Strings(all)
	var first []string
	for _, f := range all {
		if sel.First == nil || sel.First(f) {
			first = append(first, f)
		}
	}
	tr := c.newTracker(ref.Repo)
	if err := c.fetchFiles(ctx, ref.Repo, commit, first, tr); err != nil {
		return nil, err
	}
	files := first
	if sel.Then != nil {
		more, err := sel.Then(snap.Dir, all)
		if err != nil {
			return nil, fmt.Errorf("hub: %s: %w", ref, err)
		}
		var rest []string
		for _, f := range more {
			if !slices.Contains(files, f) {
				if !slices.Contains(all, f) {
					return nil, fmt.Errorf("hub: %s: %s is needed but not in the repository", ref, f)
				}
				rest = append(rest, f)
			}
		}
		if err := c.fetchFiles(ctx, ref.Repo, commit, rest, tr); err != nil {
			return nil, err
		}
		files = append(files, rest...)
	}
	tr.finish()
	if err := c.writeRef(ref.Repo, ref.rev(), commit); err != nil {
		return nil, err
	}
	if sel.Complete != nil {
		if err := sel.Complete(snap.Dir); err != nil {
			return nil, fmt.Errorf("hub: %s: downloaded snapshot is not usable: %w", ref, err)
		}
	}
	sort.Strings(files)
	snap.Files = files
	snap.Downloaded = tr.transferred()
	return snap, nil
}

// freeSpaceFn is freeSpace, replaceable in tests.
var freeSpaceFn = freeSpace

// localPath rejects repository paths that would escape the snapshot.
func localPath(p string) bool {
	return p != "" && filepath.IsLocal(filepath.FromSlash(p)) && path.Clean(p) == p
}

// fetchFiles makes snapshots/<commit>/<file> exist for every file: files
// already linked cost nothing, blobs already present are only linked, the
// rest are downloaded (Parallel at once) after a free-space check.
func (c *Client) fetchFiles(ctx context.Context, repo, commit string, files []string, tr *tracker) error {
	snapDir := c.SnapshotDir(repo, commit)
	var todo []string
	for _, f := range files {
		if !fileExists(filepath.Join(snapDir, filepath.FromSlash(f))) {
			todo = append(todo, f)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Metadata first (HEAD requests), so sizes are known before any byte
	// is written.
	metas := make([]*fileMeta, len(todo))
	if err := c.forEach(ctx, cancel, len(todo), func(i int) error {
		m, err := c.head(ctx, repo, commit, todo[i])
		if err != nil {
			return err
		}
		if m.commit != "" && m.commit != commit {
			c.logger().Warn("hub: file resolved at another commit", "file", todo[i], "want", commit, "got", m.commit)
		}
		metas[i] = m
		return nil
	}); err != nil {
		return err
	}

	var jobs []*blobJob
	var need int64
	pending := map[string]bool{} // etags already queued (identical files)
	for i, f := range todo {
		m := metas[i]
		if fileExists(c.blobPath(repo, m.etag)) || pending[m.etag] {
			continue
		}
		pending[m.etag] = true
		j := &blobJob{repo: repo, file: f, meta: m}
		jobs = append(jobs, j)
		if m.size > 0 {
			have := int64(0)
			if st, err := os.Stat(c.blobPath(repo, m.etag) + ".incomplete"); err == nil && st.Size() <= m.size {
				have = st.Size()
			}
			need += m.size - have
		}
	}
	if len(jobs) > 0 {
		blobs := filepath.Join(c.RepoDir(repo), "blobs")
		if err := os.MkdirAll(blobs, 0o755); err != nil {
			return c.localErr(err, blobs)
		}
		// A little headroom: the file system needs some for its own data.
		if free := freeSpaceFn(blobs); free >= 0 && need+(64<<20) > free {
			return &DiskFullError{Dir: blobs, Need: need, Free: free}
		}
		tr.addFiles(jobs)
		if err := c.forEach(ctx, cancel, len(jobs), func(i int) error {
			return c.fetchBlob(ctx, jobs[i], tr)
		}); err != nil {
			return err
		}
	}
	for i, f := range todo {
		blob := c.blobPath(repo, metas[i].etag)
		if err := linkPointer(blob, filepath.Join(snapDir, filepath.FromSlash(f))); err != nil {
			return err
		}
	}
	return nil
}

// forEach runs fn(0..n-1) on up to Parallel goroutines and returns the
// first error (cancelling the others).
func (c *Client) forEach(_ context.Context, cancel context.CancelFunc, n int, fn func(int) error) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     int
	)
	for range min(c.parallel(), n) {
		wg.Go(func() {
			for {
				mu.Lock()
				if next >= n || firstErr != nil {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := fn(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// Progress describes a running pull.
type Progress struct {
	Repo      string
	File      string // the file that advanced last
	Done      int64  // bytes of the files being downloaded that are on disk (resumed bytes included)
	Total     int64  // bytes of the files being downloaded
	Files     int    // files being downloaded
	FilesDone int
	Rate      float64       // bytes per second over the last few seconds
	ETA       time.Duration // -1 when unknown
	Elapsed   time.Duration
	Finished  bool // the last report of the pull
}

// tracker aggregates progress over the parallel downloads.
type tracker struct {
	c       *Client
	mu      sync.Mutex
	p       Progress
	start   time.Time
	last    time.Time
	got     map[*blobJob]int64 // bytes on disk per job
	moved   int64              // bytes transferred by this pull
	samples []sample
}

type sample struct {
	t    time.Time
	done int64
}

func (c *Client) newTracker(repo string) *tracker {
	now := time.Now()
	return &tracker{c: c, p: Progress{Repo: repo, ETA: -1}, start: now, got: map[*blobJob]int64{}}
}

func (t *tracker) addFiles(jobs []*blobJob) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, j := range jobs {
		t.p.Files++
		if j.meta.size > 0 {
			t.p.Total += j.meta.size
		}
	}
	t.emit(true)
}

// resumeAt sets how many bytes of j are on disk (a resumed or restarted file).
func (t *tracker) resumeAt(j *blobJob, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.Done += n - t.got[j]
	t.got[j] = n
}

func (t *tracker) add(j *blobJob, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.got[j] += n
	t.p.Done += n
	t.moved += n
	t.p.File = j.file
	if j.meta.size >= 0 && t.got[j] == j.meta.size {
		t.p.FilesDone++
	}
	t.emit(false)
}

// skip marks j as done without a transfer (another process fetched it).
func (t *tracker) skip(j *blobJob) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if j.meta.size > 0 {
		t.p.Done += j.meta.size - t.got[j]
		t.got[j] = j.meta.size
	}
	t.p.FilesDone++
}

func (t *tracker) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p.Files == 0 {
		return
	}
	t.p.Finished = true
	t.p.FilesDone = t.p.Files
	t.emit(true)
}

func (t *tracker) transferred() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.moved
}

// emit calls the Progress callback (with t.mu held, which serializes calls)
// when forced or when ProgressEvery has passed.
func (t *tracker) emit(force bool) {
	if t.c.Progress == nil {
		return
	}
	now := time.Now()
	every := t.c.ProgressEvery
	if every <= 0 {
		every = 200 * time.Millisecond
	}
	if !force && now.Sub(t.last) < every {
		return
	}
	t.last = now
	// Rate over a sliding window of about five seconds.
	t.samples = append(t.samples, sample{now, t.p.Done})
	for len(t.samples) > 2 && now.Sub(t.samples[1].t) > 5*time.Second {
		t.samples = t.samples[1:]
	}
	t.p.Elapsed = now.Sub(t.start)
	t.p.Rate, t.p.ETA = 0, -1
	if s := t.samples[0]; now.Sub(s.t) > 0 && t.p.Done > s.done {
		t.p.Rate = float64(t.p.Done-s.done) / now.Sub(s.t).Seconds()
		t.p.ETA = time.Duration(float64(t.p.Total-t.p.Done) / t.p.Rate * float64(time.Second))
	}
	if t.p.Finished {
		t.p.ETA = 0
	}
	t.c.Progress(t.p)
}
