package hub

import (
	"errors"
	"fmt"
)

// ErrOffline is wrapped by errors about files that are not in the cache while
// the client is offline.
var ErrOffline = errors.New("offline mode (HF_HUB_OFFLINE) and not in the cache")

// NotCachedError reports a model (or file) that is not complete in the cache.
type NotCachedError struct {
	Ref      Ref
	CacheDir string
	Reason   string
	Err      error // ErrOffline when the client is offline
}

func (e *NotCachedError) Error() string {
	s := fmt.Sprintf("hub: %s is not in the cache %s: %s", e.Ref, e.CacheDir, e.Reason)
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	return s
}

func (e *NotCachedError) Unwrap() error { return e.Err }

// HTTPError is an unexpected response from the hub or its CDN.
type HTTPError struct {
	Method  string
	URL     string
	Status  int
	Message string // the hub's X-Error-Message or JSON "error", if any
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("hub: %s %s: HTTP %d", e.Method, e.URL, e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	switch e.Status {
	case 401:
		s += " (authentication required: set HF_TOKEN or log in with `hf auth login`)"
	case 403:
		s += " (access denied: the repository may be gated; accept its terms on the hub and set HF_TOKEN)"
	case 404:
		s += " (repository, revision or file not found)"
	}
	return s
}

// temporary reports whether retrying may help.
func (e *HTTPError) temporary() bool {
	return e.Status == 408 || e.Status == 429 || e.Status >= 500
}

// ChecksumError reports downloaded bytes that do not hash to the value the
// hub announced. Nothing is left under the file's final name.
type ChecksumError struct {
	File string // path in the repository
	Algo string // "sha256" or "git-sha1"
	Want string
	Got  string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("hub: %s: downloaded data is corrupt: %s %s, the hub announced %s", e.File, e.Algo, e.Got, e.Want)
}

// DiskFullError reports too little free space for a download, found before
// it starts or from an ENOSPC while writing.
type DiskFullError struct {
	Dir  string
	Need int64 // bytes still to write (0 if unknown)
	Free int64 // bytes free (-1 if unknown)
	Err  error
}

func (e *DiskFullError) Error() string {
	s := fmt.Sprintf("hub: not enough disk space in %s", e.Dir)
	if e.Need > 0 && e.Free >= 0 {
		s += fmt.Sprintf(": need %s more, %s free", FormatBytes(e.Need), FormatBytes(e.Free))
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s + " (free space or set HF_HUB_CACHE to another disk)"
}

func (e *DiskFullError) Unwrap() error { return e.Err }

// FormatBytes formats n with a binary unit, e.g. "12.3 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
