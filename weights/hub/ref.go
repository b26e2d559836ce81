package hub

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Ref names a model repository on the hub and a revision (branch, tag or
// commit), written "Org/Name" or "Org/Name@revision".
type Ref struct {
	Repo     string // "Org/Name"
	Revision string // "" means DefaultRevision
}

func (r Ref) String() string {
	if r.Revision == "" {
		return r.Repo
	}
	return r.Repo + "@" + r.Revision
}

// rev returns the revision with the default filled in.
func (r Ref) rev() string {
	if r.Revision == "" {
		return DefaultRevision
	}
	return r.Revision
}

// repoPart is one half of a repo id as the hub allows it: letters, digits,
// '-', '_' and '.', not starting or ending with '-' or '.', no "--" or "..".
var repoPart = regexp.MustCompile(`^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$`)

// commitRe matches a full git commit hash.
var commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)

// ParseRef parses "Org/Name" or "Org/Name@revision". The revision may hold
// slashes ("refs/pr/3"). A "hf://" prefix is accepted.
func ParseRef(s string) (Ref, error) {
	s = strings.TrimPrefix(s, "hf://")
	repo, rev, hasRev := strings.Cut(s, "@")
	org, name, ok := strings.Cut(repo, "/")
	bad := func(why string) (Ref, error) {
		return Ref{}, fmt.Errorf("hub: %q is not a model reference (want Org/Name or Org/Name@revision): %s", s, why)
	}
	if !ok || strings.Contains(name, "/") {
		return bad("the repository id must have exactly one '/'")
	}
	for _, p := range []string{org, name} {
		if !repoPart.MatchString(p) || strings.Contains(p, "--") || strings.Contains(p, "..") {
			return bad(fmt.Sprintf("%q is not a valid repository name part", p))
		}
	}
	if hasRev {
		if rev == "" || strings.ContainsAny(rev, " \t\n\\") || strings.Contains(rev, "..") ||
			strings.HasPrefix(rev, "/") || strings.HasSuffix(rev, "/") {
			return bad(fmt.Sprintf("bad revision %q", rev))
		}
	}
	return Ref{Repo: repo, Revision: rev}, nil
}

// LooksLikeRef reports whether s parses as a model reference. A string that
// names an existing local path should be treated as a path first.
func LooksLikeRef(s string) bool {
	_, err := ParseRef(s)
	return err == nil
}

// RepoDir returns the cache folder of a model repository:
// <cache>/models--Org--Name.
func (c *Client) RepoDir(repo string) string {
	return filepath.Join(c.CacheDir, "models--"+strings.ReplaceAll(repo, "/", "--"))
}

// refPath returns the file recording the commit of a revision. Revisions
// with slashes ("refs/pr/3") become nested directories, as in huggingface_hub.
func (c *Client) refPath(repo, rev string) string {
	return filepath.Join(c.RepoDir(repo), "refs", filepath.FromSlash(rev))
}

// SnapshotDir returns the snapshot folder of a commit.
func (c *Client) SnapshotDir(repo, commit string) string {
	return filepath.Join(c.RepoDir(repo), "snapshots", commit)
}

func (c *Client) blobPath(repo, etag string) string {
	return filepath.Join(c.RepoDir(repo), "blobs", etag)
}

func (c *Client) lockPath(repo, etag string) string {
	return filepath.Join(c.CacheDir, ".locks", "models--"+strings.ReplaceAll(repo, "/", "--"), etag+".lock")
}

// readRef returns the commit recorded for rev ("" and nil if there is none).
func (c *Client) readRef(repo, rev string) (string, error) {
	b, err := os.ReadFile(c.refPath(repo, rev))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	commit := strings.TrimSpace(string(b))
	if !commitRe.MatchString(commit) {
		return "", fmt.Errorf("hub: %s: does not hold a commit hash", c.refPath(repo, rev))
	}
	return commit, nil
}

// writeRef records commit as the commit of rev (atomically; no trailing
// newline, like huggingface_hub). A commit revision gets no ref file.
func (c *Client) writeRef(repo, rev, commit string) error {
	if rev == commit {
		return nil
	}
	p := c.refPath(repo, rev)
	if old, _ := os.ReadFile(p); string(old) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", p, os.Getpid())
	if err := os.WriteFile(tmp, []byte(commit), 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("hub: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

// CachePath tells whether dir is inside a hub cache: a repository folder
// (models--Org--Name) or one of its snapshots
// (models--Org--Name/snapshots/<commit>). It returns the repository id and
// the snapshot's commit ("" for a repository folder). Only the path is
// examined.
func CachePath(dir string) (repo, commit string, ok bool) {
	dir = filepath.Clean(dir)
	base := filepath.Base(dir)
	if commitRe.MatchString(base) && filepath.Base(filepath.Dir(dir)) == "snapshots" {
		commit = base
		dir = filepath.Dir(filepath.Dir(dir))
		base = filepath.Base(dir)
	}
	name, found := strings.CutPrefix(base, "models--")
	org, rest, two := strings.Cut(name, "--")
	if !found || !two || org == "" || rest == "" || strings.Contains(rest, "--") {
		return "", "", false
	}
	return org + "/" + rest, commit, true
}

// RepoSnapshot returns the snapshot directory that refs/<rev> of a
// repository cache folder (models--Org--Name) points to, without network.
func RepoSnapshot(repoDir, rev string) (string, error) {
	if rev == "" {
		rev = DefaultRevision
	}
	if commitRe.MatchString(rev) {
		return filepath.Join(repoDir, "snapshots", rev), nil
	}
	p := filepath.Join(repoDir, "refs", filepath.FromSlash(rev))
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	commit := strings.TrimSpace(string(b))
	if !commitRe.MatchString(commit) {
		return "", fmt.Errorf("hub: %s: does not hold a commit hash", p)
	}
	snap := filepath.Join(repoDir, "snapshots", commit)
	if st, err := os.Stat(snap); err != nil || !st.IsDir() {
		return "", fmt.Errorf("hub: %s points to %s, which is missing", p, snap)
	}
	return snap, nil
}
