package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// revisionInfo is the part of GET /api/models/{repo}/revision/{rev} used here.
type revisionInfo struct {
	SHA      string `json:"sha"`
	Siblings []struct {
		RFilename string `json:"rfilename"`
	} `json:"siblings"`
}

// fileMeta is what the HEAD of a resolve URL says about one file.
type fileMeta struct {
	commit   string // X-Repo-Commit
	etag     string // X-Linked-Etag or ETag, normalized: the blob name
	size     int64  // X-Linked-Size or Content-Length; -1 if unknown
	location string // where to GET the bytes (the CDN for LFS files)
}

// escapePath escapes each segment of a repository path, keeping the slashes.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

func (c *Client) resolveURL(repo, rev, file string) string {
	return c.Endpoint + "/" + repo + "/resolve/" + url.PathEscape(rev) + "/" + escapePath(file)
}

// newRequest builds a request with the user agent, identity encoding (sizes
// and ranges refer to the stored bytes) and, for the hub's own host only,
// the token.
func (c *Client) newRequest(ctx context.Context, method, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	req.Header.Set("User-Agent", c.userAgent())
	req.Header.Set("Accept-Encoding", "identity")
	if c.Token != "" && sameHost(u, c.Endpoint) {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

func sameHost(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && strings.EqualFold(ua.Host, ub.Host) && ua.Scheme == ub.Scheme
}

// httpError builds an *HTTPError from a failed response (and drains it).
func httpError(resp *http.Response) error {
	e := &HTTPError{Method: resp.Request.Method, URL: resp.Request.URL.Redacted(), Status: resp.StatusCode}
	e.Message = resp.Header.Get("X-Error-Message")
	if e.Message == "" && resp.Request.Method != http.MethodHead {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var js struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &js) == nil {
			e.Message = js.Error
		}
	}
	return e
}

// retry runs op until it succeeds, fails for good, or has failed
// c.retries() times in a row without progress. op reports whether it made
// progress (which resets the count and the delay).
func (c *Client) retry(ctx context.Context, what string, op func() (progressed bool, err error)) error {
	delay := c.backoff()
	for failures := 0; ; {
		progressed, err := op()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retryable(err) {
			return err
		}
		if progressed {
			failures, delay = 0, c.backoff()
		}
		failures++
		if failures >= c.retries() {
			return fmt.Errorf("hub: %s: giving up after %d attempts: %w", what, failures, err)
		}
		c.logger().Warn("hub: retrying", "what", what, "in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// errTruncated is a body that ended before the announced size.
var errTruncated = errors.New("connection closed before the end of the file")

// errStalled is a body that delivered nothing for StallTimeout.
var errStalled = errors.New("no data received for too long")

// retryable tells network trouble (worth another attempt) from errors that
// will not go away by retrying.
func retryable(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.temporary()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return false // no such host: retrying will not help
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, errStalled):
		return false
	case errors.Is(err, errTruncated), errors.Is(err, errStalled), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF), errors.As(err, &ne):
		return true
	}
	var ue *url.Error
	return errors.As(err, &ue) // transport failures (connection refused, reset, TLS)
}

// revision asks the hub which commit a revision is and which files it holds.
func (c *Client) revision(ctx context.Context, ref Ref) (*revisionInfo, error) {
	u := c.Endpoint + "/api/models/" + ref.Repo + "/revision/" + url.PathEscape(ref.rev())
	var info revisionInfo
	err := c.retry(ctx, "revision "+ref.String(), func() (bool, error) {
		req, err := c.newRequest(ctx, http.MethodGet, u)
		if err != nil {
			return false, err
		}
		resp, err := c.httpClient().Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, httpError(resp)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			return false, err
		}
		if err := json.Unmarshal(body, &info); err != nil {
			return false, fmt.Errorf("hub: %s: bad JSON from the hub: %v", u, err)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	if !commitRe.MatchString(info.SHA) {
		return nil, fmt.Errorf("hub: %s: the hub returned no commit hash for %s", u, ref)
	}
	return &info, nil
}

// head reads a file's metadata from its resolve URL, following relative
// redirects (renamed repositories) but not absolute ones (the CDN).
func (c *Client) head(ctx context.Context, repo, commit, file string) (*fileMeta, error) {
	var meta *fileMeta
	err := c.retry(ctx, "metadata of "+file, func() (bool, error) {
		u := c.resolveURL(repo, commit, file)
		for hop := 0; ; hop++ {
			req, err := c.newRequest(ctx, http.MethodHead, u)
			if err != nil {
				return false, err
			}
			resp, err := c.httpClient().Do(req)
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			redirect := resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != ""
			if redirect {
				lu, err := url.Parse(loc)
				if err != nil {
					return false, fmt.Errorf("hub: HEAD %s: bad Location %q", u, loc)
				}
				if lu.Host == "" && hop < 5 {
					u = resp.Request.URL.ResolveReference(lu).String()
					continue
				}
				loc = resp.Request.URL.ResolveReference(lu).String()
			} else if resp.StatusCode >= 300 {
				return false, httpError(resp)
			} else {
				loc = u
			}
			h := resp.Header
			meta = &fileMeta{commit: h.Get("X-Repo-Commit"), location: loc, size: -1}
			meta.etag = normalizeETag(h.Get("X-Linked-Etag"))
			if meta.etag == "" {
				meta.etag = normalizeETag(h.Get("ETag"))
			}
			for _, s := range []string{h.Get("X-Linked-Size"), h.Get("Content-Length")} {
				if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
					meta.size = n
					break
				}
			}
			if meta.etag == "" || strings.ContainsAny(meta.etag, `/\`) || meta.etag == "." || meta.etag == ".." {
				return false, fmt.Errorf("hub: HEAD %s: no usable ETag in the response; cannot name the blob", u)
			}
			return false, nil
		}
	})
	return meta, err
}

// normalizeETag strips the weak prefix and the quotes.
func normalizeETag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	return strings.Trim(s, `"`)
}

// newHasher returns the hash a blob named etag must match: sha256 of the
// bytes for LFS files (a 64-hex etag), the git blob sha1 for small files (a
// 40-hex etag), or nil when the etag is neither.
func newHasher(etag string, size int64) (h hash.Hash, algo string) {
	switch {
	case isHex(etag, 64):
		return sha256.New(), "sha256"
	case isHex(etag, 40) && size >= 0:
		h := sha1.New()
		fmt.Fprintf(h, "blob %d\x00", size)
		return h, "git-sha1"
	}
	return nil, ""
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// blobJob is one blob to fetch into the cache.
type blobJob struct {
	repo, file string
	meta       *fileMeta
	// Hash state carried across attempts of this process, so a retry does
	// not re-read what is already on disk.
	h      hash.Hash
	algo   string
	hashed int64
}

// fetchBlob downloads a blob to blobs/<etag>.incomplete (resuming what is
// there), verifies it and renames it to blobs/<etag>. A lock file keeps a
// second process from downloading the same blob at the same time.
func (c *Client) fetchBlob(ctx context.Context, j *blobJob, tr *tracker) error {
	blob := c.blobPath(j.repo, j.meta.etag)
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return c.localErr(err, filepath.Dir(blob))
	}
	lock := c.lockPath(j.repo, j.meta.etag)
	if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
		return c.localErr(err, filepath.Dir(lock))
	}
	unlock, err := lockFile(lock)
	if err != nil {
		return fmt.Errorf("hub: lock %s: %w", lock, err)
	}
	defer unlock()
	if fileExists(blob) { // another process finished it while we waited
		tr.skip(j)
		return nil
	}
	inc := blob + ".incomplete"
	err = c.retry(ctx, "download "+j.file, func() (bool, error) { return c.fetchOnce(ctx, j, inc, tr) })
	if err != nil {
		return err
	}
	if err := os.Rename(inc, blob); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

// fetchOnce makes one attempt: GET the rest of the file, append it to inc,
// and verify the whole file once complete.
func (c *Client) fetchOnce(ctx context.Context, j *blobJob, inc string, tr *tracker) (progressed bool, err error) {
	f, err := os.OpenFile(inc, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false, c.localErr(err, filepath.Dir(inc))
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = c.localErr(cerr, filepath.Dir(inc))
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("hub: %w", err)
	}
	off, size := st.Size(), j.meta.size
	if size >= 0 && off > size {
		off = 0
	}
	if err := c.rehash(f, j, off); err != nil {
		return false, err
	}
	tr.resumeAt(j, off)

	if size < 0 || off < size {
		n, err := c.getRange(ctx, j, f, off, tr)
		if err != nil {
			return n > 0, err
		}
		off += n
		progressed = n > 0
		if size >= 0 && off != size {
			return progressed, fmt.Errorf("hub: %s: %w (%d of %d bytes)", j.file, errTruncated, off, size)
		}
	}
	if j.h != nil {
		got := hex.EncodeToString(j.h.Sum(nil))
		if got != j.meta.etag {
			f.Close()
			os.Remove(inc)
			tr.resumeAt(j, 0)
			j.h, j.hashed = nil, 0
			return false, &ChecksumError{File: j.file, Algo: j.algo, Want: j.meta.etag, Got: got}
		}
	}
	if err := f.Sync(); err != nil {
		return progressed, c.localErr(err, filepath.Dir(inc))
	}
	return progressed, nil
}

// rehash brings j's hash state to the first off bytes of f: reused when it
// is already there (a retry in this process), otherwise re-read from disk
// (a download resumed from an earlier run). It also truncates f to off.
func (c *Client) rehash(f *os.File, j *blobJob, off int64) error {
	if err := f.Truncate(off); err != nil {
		return c.localErr(err, filepath.Dir(f.Name()))
	}
	if j.h != nil && j.hashed == off {
		return nil
	}
	j.h, j.algo = newHasher(j.meta.etag, j.meta.size)
	j.hashed = 0
	if j.h == nil || off == 0 {
		return nil
	}
	if _, err := io.Copy(j.h, io.NewSectionReader(f, 0, off)); err != nil {
		return fmt.Errorf("hub: re-reading %s: %w", f.Name(), err)
	}
	j.hashed = off
	return nil
}

// getRange GETs the file from off to the end and appends it to f, feeding
// the hash and the progress tracker. It returns the bytes appended.
func (c *Client) getRange(ctx context.Context, j *blobJob, f *os.File, off int64, tr *tracker) (int64, error) {
	// A watchdog cancels the request when no byte arrives for stallTimeout.
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := c.newRequest(rctx, http.MethodGet, j.meta.location)
	if err != nil {
		return 0, err
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != off {
			return 0, fmt.Errorf("hub: GET %s: Content-Range %q does not start at %d", req.URL.Redacted(), resp.Header.Get("Content-Range"), off)
		}
	case resp.StatusCode == http.StatusOK:
		if off > 0 { // the server ignored the range: start over
			if err := c.rehash(f, j, 0); err != nil {
				return 0, err
			}
			tr.resumeAt(j, 0)
		}
		off = 0
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// The partial file is not a prefix of this blob; start over.
		if err := c.rehash(f, j, 0); err != nil {
			return 0, err
		}
		tr.resumeAt(j, 0)
		return 0, fmt.Errorf("hub: GET %s: %w (range %d- rejected)", req.URL.Redacted(), errTruncated, off)
	default:
		return 0, httpError(resp)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, fmt.Errorf("hub: %w", err)
	}

	stall := c.StallTimeout
	if stall <= 0 {
		stall = 60 * time.Second
	}
	watchdog := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer watchdog.Stop()

	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, rerr := resp.Body.Read(buf)
		if k > 0 {
			watchdog.Reset(stall)
			if _, werr := f.Write(buf[:k]); werr != nil {
				// Keep only what is on disk and hashed: roll the file back
				// to the last complete write.
				f.Truncate(off + n)
				return n, c.localErr(werr, filepath.Dir(f.Name()))
			}
			if j.h != nil {
				j.h.Write(buf[:k])
				j.hashed += int64(k)
			}
			n += int64(k)
			tr.add(j, int64(k))
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			if cause := context.Cause(rctx); errors.Is(cause, errStalled) {
				rerr = errStalled
			}
			return n, fmt.Errorf("hub: download %s: %w", j.file, rerr)
		}
	}
}

// contentRangeStart parses the first byte of "bytes START-END/SIZE".
func contentRangeStart(s string) (int64, bool) {
	s, ok := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !ok {
		return 0, false
	}
	a, _, ok := strings.Cut(s, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(a, 10, 64)
	return n, err == nil
}

// localErr turns a local file-system error into a *DiskFullError when the
// disk is full.
func (c *Client) localErr(err error, dir string) error {
	if isNoSpace(err) {
		return &DiskFullError{Dir: dir, Free: freeSpace(dir), Err: err}
	}
	return fmt.Errorf("hub: %w", err)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// linkPointer makes snapshots/<commit>/<file> a relative symlink to the
// blob, replacing any previous pointer atomically. Where symlinks are not
// available the blob is hard-linked or copied instead.
func linkPointer(blob, pointer string) error {
	if err := os.MkdirAll(filepath.Dir(pointer), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	rel, err := filepath.Rel(filepath.Dir(pointer), blob)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	tmp := fmt.Sprintf("%s.tmp-link-%d", pointer, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(rel, tmp); err != nil {
		if err := os.Link(blob, tmp); err != nil {
			if err := copyFile(blob, tmp); err != nil {
				return fmt.Errorf("hub: %w", err)
			}
		}
	}
	if err := os.Rename(tmp, pointer); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}
