// Package hubtest serves a directory as a fake Hugging Face Hub for tests:
// the revision API, resolve URLs (302 to a separate CDN server for LFS
// files, with X-Linked-Etag / X-Linked-Size / X-Repo-Commit headers), HEAD
// and Range requests, and hooks that cut connections, corrupt bytes or fail
// requests.
package hubtest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// LFSThreshold: files at least this large, and every .safetensors file, are
// served as LFS files (redirected to the CDN, named by sha256).
const LFSThreshold = 1 << 20

// Request is one request the fake hub or CDN received.
type Request struct {
	Server string // "hub" or "cdn"
	Method string
	Path   string // escaped path
	Range  string
	Auth   string
}

// Server is a fake hub holding one repository at one commit.
type Server struct {
	Hub, CDN *httptest.Server
	Repo     string
	Commit   string

	mu       sync.Mutex
	files    map[string][]byte
	reqs     []Request
	cutAfter map[string]int64
	corrupt  map[string]bool
	failNext int
	token    string
}

// New serves the files under dir (and extra, path → content) as repository
// repo. The servers are closed when the test ends.
func New(tb testing.TB, repo, dir string, extra map[string][]byte) *Server {
	tb.Helper()
	s := &Server{Repo: repo, files: map[string][]byte{}, cutAfter: map[string]int64{}, corrupt: map[string]bool{}}
	if dir != "" {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			b, err := os.ReadFile(p)
			s.files[filepath.ToSlash(rel)] = b
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	for k, v := range extra {
		s.files[k] = v
	}
	h := sha1.Sum([]byte(repo + fmt.Sprint(len(s.files))))
	s.Commit = hex.EncodeToString(h[:])
	s.Hub = httptest.NewServer(http.HandlerFunc(s.serveHub))
	s.CDN = httptest.NewServer(http.HandlerFunc(s.serveCDN))
	tb.Cleanup(func() { s.Hub.Close(); s.CDN.Close() })
	return s
}

// Endpoint is the URL to use as HF_ENDPOINT.
func (s *Server) Endpoint() string { return s.Hub.URL }

// File returns the content of a repository file.
func (s *Server) File(name string) []byte { return s.files[name] }

// Files returns the repository paths, sorted.
func (s *Server) Files() []string {
	out := make([]string, 0, len(s.files))
	for k := range s.files {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// IsLFS reports whether a file is served as an LFS file.
func (s *Server) IsLFS(name string) bool {
	return strings.HasSuffix(name, ".safetensors") || len(s.files[name]) >= LFSThreshold
}

// ETag returns the blob name of a file: sha256 for LFS files, the git blob
// sha1 otherwise.
func (s *Server) ETag(name string) string {
	b := s.files[name]
	if s.IsLFS(name) {
		h := sha256.Sum256(b)
		return hex.EncodeToString(h[:])
	}
	return GitBlobSHA1(b)
}

// GitBlobSHA1 is the git object id of a blob with content b.
func GitBlobSHA1(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	s.reqs = nil
	s.mu.Unlock()
}

// CutAfter makes the next CDN transfer of file drop the connection after n
// body bytes.
func (s *Server) CutAfter(file string, n int64) {
	s.mu.Lock()
	s.cutAfter[file] = n
	s.mu.Unlock()
}

// Corrupt makes the CDN serve file with one byte changed.
func (s *Server) Corrupt(file string) {
	s.mu.Lock()
	s.corrupt[file] = true
	s.mu.Unlock()
}

// FailNext makes the next n hub requests answer 503.
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	s.failNext = n
	s.mu.Unlock()
}

// RequireToken makes the hub answer 401 unless "Authorization: Bearer tok".
func (s *Server) RequireToken(tok string) {
	s.mu.Lock()
	s.token = tok
	s.mu.Unlock()
}

func (s *Server) record(server string, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, Request{Server: server, Method: r.Method, Path: r.URL.EscapedPath(),
		Range: r.Header.Get("Range"), Auth: r.Header.Get("Authorization")})
	s.mu.Unlock()
}

func (s *Server) serveHub(w http.ResponseWriter, r *http.Request) {
	s.record("hub", r)
	s.mu.Lock()
	fail := s.failNext > 0
	if fail {
		s.failNext--
	}
	tok := s.token
	s.mu.Unlock()
	if fail {
		http.Error(w, `{"error":"try again"}`, http.StatusServiceUnavailable)
		return
	}
	if tok != "" && r.Header.Get("Authorization") != "Bearer "+tok {
		w.Header().Set("X-Error-Message", "Invalid credentials")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	p := r.URL.EscapedPath()
	if rest, ok := strings.CutPrefix(p, "/api/models/"+s.Repo+"/revision/"); ok {
		rev, _ := url.PathUnescape(rest)
		if rev != "main" && rev != s.Commit {
			w.Header().Set("X-Error-Message", "Invalid rev id: "+rev)
			http.Error(w, `{"error":"Invalid rev id"}`, http.StatusNotFound)
			return
		}
		type sib struct {
			RFilename string `json:"rfilename"`
		}
		info := struct {
			ID       string `json:"id"`
			SHA      string `json:"sha"`
			Siblings []sib  `json:"siblings"`
		}{ID: s.Repo, SHA: s.Commit}
		for _, f := range s.Files() {
			info.Siblings = append(info.Siblings, sib{f})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(info)
		return
	}
	rest, ok := strings.CutPrefix(p, "/"+s.Repo+"/resolve/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	revEsc, fileEsc, _ := strings.Cut(rest, "/")
	rev, _ := url.PathUnescape(revEsc)
	file, _ := url.PathUnescape(fileEsc)
	data, exists := s.files[file]
	if rev != "main" && rev != s.Commit || !exists {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("X-Repo-Commit", s.Commit)
	if s.IsLFS(file) {
		h.Set("X-Linked-Etag", `"`+s.ETag(file)+`"`)
		h.Set("X-Linked-Size", strconv.Itoa(len(data)))
		h.Set("ETag", `"`+GitBlobSHA1([]byte("pointer "+file))+`"`) // the pointer file's id
		h.Set("Location", s.CDN.URL+"/blobs/"+s.ETag(file)+"?file="+url.QueryEscape(file))
		w.WriteHeader(http.StatusFound)
		return
	}
	h.Set("ETag", `"`+s.ETag(file)+`"`)
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(data)
	}
}

func (s *Server) serveCDN(w http.ResponseWriter, r *http.Request) {
	s.record("cdn", r)
	file := r.URL.Query().Get("file")
	data, ok := s.files[file]
	if !ok || !strings.HasSuffix(r.URL.Path, "/"+s.ETag(file)) {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	cut, doCut := s.cutAfter[file]
	delete(s.cutAfter, file)
	if s.corrupt[file] {
		data = append([]byte(nil), data...)
		data[len(data)/2] ^= 0xff
	}
	s.mu.Unlock()

	start := int64(0)
	if rg := r.Header.Get("Range"); rg != "" {
		v, ok := strings.CutPrefix(rg, "bytes=")
		v, ok2 := strings.CutSuffix(v, "-")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || !ok2 || err != nil || n < 0 {
			http.Error(w, "unsupported range", http.StatusBadRequest)
			return
		}
		if n >= int64(len(data)) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start = n
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(data)-1, len(data)))
	}
	body := data[start:]
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Accept-Ranges", "bytes")
	if start > 0 {
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if doCut && cut < int64(len(body)) {
		w.Write(body[:cut])
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Write(body)
}
