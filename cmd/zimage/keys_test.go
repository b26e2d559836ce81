package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func keysCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"keys"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestKeysCommand(t *testing.T) {
	data := t.TempDir()
	code, out, errOut := keysCmd(t, "add", "--data", data, "--credits", "150", "--name", "alice", "--rate-per-minute", "5")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, regexp.MustCompile(`^zk_[0-9a-f]{48}\n$`), out, "the key alone on stdout")
	key := strings.TrimSpace(out)
	id := regexp.MustCompile(`key_[0-9a-f]+`).FindString(errOut)
	require.NotEmpty(t, id, errOut)

	// The key is stored hashed: its text is nowhere in the data directory.
	_ = filepath.Walk(data, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(path)
			assert.NotContains(t, string(b), key[3:], "key in clear in %s", path)
		}
		return nil
	})

	code, out, errOut = keysCmd(t, "list", "--data", data)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, id)
	assert.Contains(t, out, "alice")
	assert.Contains(t, out, key[:9]+"…")
	assert.Contains(t, out, "150")
	assert.Contains(t, out, "active")

	code, out, errOut = keysCmd(t, "credit", id, "-50", "--data", data)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, id+" 100\n", out)
	code, out, _ = keysCmd(t, "credit", "--data", data, id, "25")
	require.Equal(t, 0, code)
	assert.Equal(t, id+" 125\n", out)
	code, _, errOut = keysCmd(t, "credit", "--data", data, id, "-1000")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "below")

	code, _, errOut = keysCmd(t, "revoke", "--data", data, id)
	require.Equal(t, 0, code, errOut)
	_, out, _ = keysCmd(t, "list", "--data", data)
	assert.Contains(t, out, "revoked")

	code, _, errOut = keysCmd(t, "revoke", "--data", data, "key_nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no such key")
}

func TestKeysUsageErrors(t *testing.T) {
	data := t.TempDir()
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{nil, "usage"},
		{[]string{"add"}, "--data is required"},
		{[]string{"frobnicate", "--data", data}, "unknown subcommand"},
		{[]string{"revoke", "--data", data}, "want 1 argument"},
		{[]string{"credit", "--data", data, "key_x", "lots"}, "not an integer"},
		{[]string{"add", "--data", data, "--bogus"}, "not defined"},
	} {
		code, _, errOut := keysCmd(t, tc.args...)
		assert.Equal(t, 2, code, "%v", tc.args)
		assert.Contains(t, errOut, tc.msg, "%v", tc.args)
	}
	code, _, errOut := keysCmd(t, "add", "--data", data, "--credits", "-5")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "negative")
}
