package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// keyPrefix starts every API key, so a leaked key is recognizable.
const keyPrefix = "zk_"

// ErrKeyNotFound is returned for an unknown key ID.
var ErrKeyNotFound = errors.New("server: no such key")

// KeyInfo describes an API key. The key itself is never stored: only its
// SHA-256 (keys carry 192 random bits, so a fast hash is enough) and its
// first characters, to tell keys apart in listings.
type KeyInfo struct {
	ID            string
	Name          string
	Prefix        string // the key's first characters, e.g. "zk_3f9a…"
	Credits       int64  // balance
	Reserved      int64  // held by tasks not yet finished
	RatePerMinute int    // generation requests per minute; 0 = unlimited
	Revoked       bool
	CreatedAt     time.Time
}

// Available is the balance that new tasks can reserve.
func (k KeyInfo) Available() int64 { return k.Credits - k.Reserved }

// Store manages API keys and balances in the server's database. It is what
// the "zimage keys" command uses; a running server may share the database.
type Store struct {
	db *database
}

// OpenStore opens the database of a data directory (or the PostgreSQL
// database at databaseURL, when not empty) for key management.
func OpenStore(ctx context.Context, dataDir, databaseURL string) (*Store, error) {
	db, err := openDatabase(ctx, dataDir, databaseURL)
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// ErrNoDatabase is returned by OpenExistingStore for a data directory that
// holds no zimage database.
var ErrNoDatabase = errors.New("server: no zimage database")

// OpenExistingStore is OpenStore for a database that must exist already: it
// never creates a data directory or an empty database (a mistyped --data
// must not look like a server without keys).
func OpenExistingStore(ctx context.Context, dataDir, databaseURL string) (*Store, error) {
	if !isPostgresURL(databaseURL) && dataDir != "" {
		path := filepath.Join(dataDir, sqliteFile)
		if _, err := os.Stat(path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w in %s (no file %s; \"zimage keys add\" or \"zimage serve\" creates it)", ErrNoDatabase, dataDir, path)
			}
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	return OpenStore(ctx, dataDir, databaseURL)
}

// ResolveKey returns the ID of a key given either its ID or the key itself
// ("zk_…", as a customer would quote it). The key is looked up by its hash.
func (s *Store) ResolveKey(ctx context.Context, idOrKey string) (string, error) {
	if !strings.HasPrefix(idOrKey, keyPrefix) {
		return idOrKey, nil
	}
	var id string
	err := s.db.q.queryRow(ctx, `SELECT id FROM zimage_keys WHERE hash = ?`, hashKey(idOrKey)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%w: the key %s… is not in this database", ErrKeyNotFound, idOrKey[:min(len(idOrKey), len(keyPrefix)+6)])
	}
	if err != nil {
		return "", fmt.Errorf("server: look up key: %w", err)
	}
	return id, nil
}

// Close releases the database.
func (s *Store) Close() error {
	s.db.close()
	return nil
}

// AddKey creates a key with a starting balance and returns it in clear text;
// this is the only time the key is ever seen.
func (s *Store) AddKey(ctx context.Context, name string, credits int64, ratePerMinute int) (string, KeyInfo, error) {
	if credits < 0 {
		return "", KeyInfo{}, fmt.Errorf("server: credits %d: must not be negative", credits)
	}
	if ratePerMinute < 0 {
		return "", KeyInfo{}, fmt.Errorf("server: rate per minute %d: must not be negative", ratePerMinute)
	}
	key := keyPrefix + randomHex(24)
	info := KeyInfo{
		ID:            "key_" + randomHex(6),
		Name:          name,
		Prefix:        key[:len(keyPrefix)+6],
		Credits:       credits,
		RatePerMinute: ratePerMinute,
		CreatedAt:     time.UnixMilli(time.Now().UnixMilli()).UTC(),
	}
	_, err := s.db.q.exec(ctx, `INSERT INTO zimage_keys (id, name, hash, prefix, credits, reserved, rate_per_minute, revoked, created_at)
		VALUES (?, ?, ?, ?, ?, 0, ?, 0, ?)`,
		info.ID, info.Name, hashKey(key), info.Prefix, info.Credits, int64(info.RatePerMinute), info.CreatedAt.UnixMilli())
	if err != nil {
		return "", KeyInfo{}, fmt.Errorf("server: add key: %w", err)
	}
	return key, info, nil
}

const keyColumns = `id, name, prefix, credits, reserved, rate_per_minute, revoked, created_at`

// scanKey reads a row of keyColumns, then any extra columns into extra.
func scanKey(r scanner, extra ...any) (KeyInfo, error) {
	var k KeyInfo
	var rate, revoked, created int64
	dest := append([]any{&k.ID, &k.Name, &k.Prefix, &k.Credits, &k.Reserved, &rate, &revoked, &created}, extra...)
	if err := r.Scan(dest...); err != nil {
		return KeyInfo{}, err
	}
	k.RatePerMinute = int(rate)
	k.Revoked = revoked != 0
	k.CreatedAt = time.UnixMilli(created).UTC()
	return k, nil
}

// ListKeys returns every key, oldest first.
func (s *Store) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	rows, err := s.db.q.query(ctx, `SELECT `+keyColumns+` FROM zimage_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("server: list keys: %w", err)
	}
	defer rows.Close()
	var out []KeyInfo
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("server: list keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("server: list keys: %w", err)
	}
	return out, nil
}

// Key returns one key by ID.
func (s *Store) Key(ctx context.Context, id string) (KeyInfo, error) {
	return getKey(ctx, s.db.q, id)
}

func getKey(ctx context.Context, q dbtx, id string) (KeyInfo, error) {
	k, err := scanKey(q.queryRow(ctx, `SELECT `+keyColumns+` FROM zimage_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return KeyInfo{}, fmt.Errorf("%w: %q", ErrKeyNotFound, id)
	}
	if err != nil {
		return KeyInfo{}, fmt.Errorf("server: key %q: %w", id, err)
	}
	return k, nil
}

// RevokeKey disables a key at once; its tasks stay readable to nobody.
func (s *Store) RevokeKey(ctx context.Context, id string) error {
	n, err := s.db.q.exec(ctx, `UPDATE zimage_keys SET revoked = 1 WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("server: revoke key %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %q", ErrKeyNotFound, id)
	}
	return nil
}

// AddCredits changes a key's balance by delta (negative to take credits
// away) and returns the key as it now is. The balance cannot go below what
// running tasks have reserved.
func (s *Store) AddCredits(ctx context.Context, id string, delta int64) (KeyInfo, error) {
	var out KeyInfo
	err := s.db.inTx(ctx, func(q dbtx) error {
		k, err := getKey(ctx, q, id)
		if err != nil {
			return err
		}
		if k.Credits+delta < k.Reserved {
			return fmt.Errorf("server: key %q: balance %d%+d would fall below the %d credits reserved by unfinished tasks",
				id, k.Credits, delta, k.Reserved)
		}
		if _, err := q.exec(ctx, `UPDATE zimage_keys SET credits = credits + ? WHERE id = ?`, delta, id); err != nil {
			return fmt.Errorf("server: credit key %q: %w", id, err)
		}
		out, err = getKey(ctx, q, id)
		return err
	})
	return out, err
}

// authenticate finds the live key whose clear text is presented. The lookup
// is by hash, and the stored hash is compared in constant time.
func authenticate(ctx context.Context, q dbtx, presented string) (KeyInfo, bool, error) {
	if !strings.HasPrefix(presented, keyPrefix) || len(presented) > 200 {
		return KeyInfo{}, false, nil
	}
	h := hashKey(presented)
	var stored string
	k, err := scanKey(q.queryRow(ctx, `SELECT `+keyColumns+`, hash FROM zimage_keys WHERE hash = ?`, h), &stored)
	if errors.Is(err, sql.ErrNoRows) {
		return KeyInfo{}, false, nil
	}
	if err != nil {
		return KeyInfo{}, false, fmt.Errorf("server: authenticate: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(stored), []byte(h)) != 1 || k.Revoked {
		return KeyInfo{}, false, nil
	}
	return k, true, nil
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// randomHex returns n random bytes as hex. crypto/rand does not fail on the
// platforms Go supports (it panics itself if the OS source breaks).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
