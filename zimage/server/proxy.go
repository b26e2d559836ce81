package server

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ParseTrustedProxy reads a --trusted-proxy value: a CIDR ("10.0.0.0/8")
// or a single address ("127.0.0.1").
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("trusted proxy %q: want a CIDR such as 10.0.0.0/8 or an IP address", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// fromTrustedProxy reports whether the request's peer is one of
// Config.TrustedProxies, whose X-Forwarded-* headers are believed.
func (s *Server) fromTrustedProxy(r *http.Request) bool {
	if len(s.cfg.TrustedProxies) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// firstForwarded is the first value of a (possibly comma-joined) X-Forwarded-*
// header: the one the outermost proxy set.
func firstForwarded(r *http.Request, name string) string {
	v, _, _ := strings.Cut(r.Header.Get(name), ",")
	return strings.TrimSpace(v)
}

// validHost accepts a host[:port] that is safe to put in a URL.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.ContainsRune(".-:[]_", c):
		default:
			return false
		}
	}
	return true
}

// baseURL is where this server is reached from outside: Config.PublicURL
// when set; otherwise the request's scheme and Host, which a trusted proxy
// may override with X-Forwarded-Proto and X-Forwarded-Host. From any other
// peer those headers are ignored: a client must not choose the links that
// other clients are given.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if s.fromTrustedProxy(r) {
		switch p := strings.ToLower(firstForwarded(r, "X-Forwarded-Proto")); p {
		case "http", "https":
			scheme = p
		}
		if h := firstForwarded(r, "X-Forwarded-Host"); validHost(h) {
			host = h
		}
	}
	return scheme + "://" + host
}
