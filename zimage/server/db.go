package server

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// dbtx is the little SQL surface the store needs. It is implemented over
// database/sql (SQLite) and over pgx (PostgreSQL), for both pools and
// transactions, so the same query code runs inside River's transactions on
// either engine. Queries are written with '?' placeholders.
type dbtx interface {
	// exec runs a statement and returns the number of rows it affected.
	exec(ctx context.Context, query string, args ...any) (int64, error)
	queryRow(ctx context.Context, query string, args ...any) scanner
	query(ctx context.Context, query string, args ...any) (rowIter, error)
}

type scanner interface{ Scan(dest ...any) error }

type rowIter interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// sqlQ adapts *sql.DB and *sql.Tx.
type sqlQ struct {
	q interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
		QueryRowContext(context.Context, string, ...any) *sql.Row
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	}
}

func (s sqlQ) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqlQ) queryRow(ctx context.Context, query string, args ...any) scanner {
	return s.q.QueryRowContext(ctx, query, args...)
}

func (s sqlQ) query(ctx context.Context, query string, args ...any) (rowIter, error) {
	rows, err := s.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

// pgxQ adapts *pgxpool.Pool and pgx.Tx, rewriting '?' placeholders to $n.
type pgxQ struct {
	q interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
		QueryRow(context.Context, string, ...any) pgx.Row
		Query(context.Context, string, ...any) (pgx.Rows, error)
	}
}

func (p pgxQ) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := p.q.Exec(ctx, rebind(query), args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (p pgxQ) queryRow(ctx context.Context, query string, args ...any) scanner {
	return pgxRow{p.q.QueryRow(ctx, rebind(query), args...)}
}

func (p pgxQ) query(ctx context.Context, query string, args ...any) (rowIter, error) {
	rows, err := p.q.Query(ctx, rebind(query), args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// pgxRow maps pgx's no-rows error onto database/sql's so callers test one.
type pgxRow struct{ r pgx.Row }

func (r pgxRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if err == pgx.ErrNoRows {
		return sql.ErrNoRows
	}
	return err
}

var rebound sync.Map // query string → rewritten query

// rebind rewrites '?' placeholders to PostgreSQL's $1, $2, … The store's
// queries never contain a literal '?', so no quoting rules are needed.
func rebind(q string) string {
	if v, ok := rebound.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	out := b.String()
	rebound.Store(q, out)
	return out
}
