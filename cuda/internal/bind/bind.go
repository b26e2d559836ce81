// Package bind fills a struct of C function pointers from a shared library
// with purego, resolving every symbol first so that all missing names are
// reported in one error and purego.RegisterLibFunc (which panics on a missing
// symbol) is never used.
//
// Each bound field carries a `sym:"name"` tag (`sym:"name,optional"` for a
// symbol that may be absent; the field then stays nil). A func-typed field is
// bound with purego.RegisterFunc; a uintptr-typed field receives the raw
// address (for calls made with purego.SyscallN).
package bind

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/ebitengine/purego"
)

// Lookup resolves a symbol name to its address.
type Lookup func(name string) (uintptr, error)

// MissingError lists the required symbols a library lacks.
type MissingError struct {
	Library string
	Symbols []string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s lacks %d required symbol(s): %s", e.Library, len(e.Symbols), strings.Join(e.Symbols, ", "))
}

// Symbols returns the tagged symbol names of table (a pointer to a struct),
// required ones first in field order, then optional ones.
func Symbols(table any) (required, optional []string) {
	t := reflect.TypeOf(table).Elem()
	for i := range t.NumField() {
		name, opt, ok := tag(t.Field(i))
		if !ok {
			continue
		}
		if opt {
			optional = append(optional, name)
		} else {
			required = append(required, name)
		}
	}
	return required, optional
}

func tag(f reflect.StructField) (name string, optional, ok bool) {
	s, ok := f.Tag.Lookup("sym")
	if !ok {
		return "", false, false
	}
	name, rest, _ := strings.Cut(s, ",")
	return name, rest == "optional", true
}

// Bind resolves every tagged field of table (a pointer to a struct) with
// lookup and fills it. Nothing is bound unless all required symbols resolve;
// the error is then a *MissingError naming every missing one.
func Bind(library string, table any, lookup Lookup) (err error) {
	v := reflect.ValueOf(table)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("bind: table must be a pointer to a struct, got %T", table)
	}
	v = v.Elem()
	t := v.Type()
	addrs := make([]uintptr, t.NumField())
	var missing []string
	for i := range t.NumField() {
		name, opt, ok := tag(t.Field(i))
		if !ok {
			continue
		}
		p, lerr := lookup(name)
		if lerr != nil || p == 0 {
			if !opt {
				missing = append(missing, name)
			}
			continue
		}
		addrs[i] = p
	}
	if len(missing) > 0 {
		return &MissingError{Library: library, Symbols: missing}
	}
	// purego.RegisterFunc panics on signatures it cannot call; that is a bug in
	// the table, but it must surface as an error, not a crash.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bind: %s: %v", library, r)
		}
	}()
	for i := range t.NumField() {
		if addrs[i] == 0 {
			continue
		}
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Func:
			purego.RegisterFunc(f.Addr().Interface(), addrs[i])
		case reflect.Uintptr:
			f.SetUint(uint64(addrs[i]))
		default:
			return fmt.Errorf("bind: %s: field %s has unsupported kind %s", library, t.Field(i).Name, f.Kind())
		}
	}
	return nil
}

// Open dlopens the first library in names that loads and returns its handle
// and name. The error joins every attempt's dlerror text.
func Open(names ...string) (handle uintptr, name string, err error) {
	var errs []error
	for _, n := range names {
		h, derr := dlopen(n)
		if derr == nil {
			return h, n, nil
		}
		errs = append(errs, derr)
	}
	if len(errs) == 0 {
		return 0, "", errors.New("bind: no library names given")
	}
	return 0, "", errors.Join(errs...)
}
