package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/zimage/zimage/zimage/server"
)

func init() {
	register("keys", "manage API keys and credits of zimage serve (add, list, revoke, credit)", runKeys)
}

const keysUsage = `usage:
  zimage keys add    --data DIR --credits N [--rate-per-minute R] [--name S]   prints the new key on stdout
  zimage keys list   --data DIR
  zimage keys revoke --data DIR KEY_ID|KEY
  zimage keys credit --data DIR KEY_ID|KEY N    (N may be negative)
KEY_ID is the key_… id that add and list show; the key itself (zk_…) works too.
Only add creates the database; the others need an existing one.
Every subcommand also takes --database postgres://… to use a shared database.`

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, keysUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := args[0]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, keysUsage) }
	data := fs.String("data", "", "data directory of zimage serve (required)")
	database := fs.String("database", "", "postgres://… when the server uses a shared database")
	var credits *int64
	var rate *int
	var name *string
	if sub == "add" {
		credits = fs.Int64("credits", 0, "starting balance (required)")
		rate = fs.Int("rate-per-minute", 60, "generation requests per minute (0 = unlimited)")
		name = fs.String("name", "", "a label for the key")
	}
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "zimage keys %s: %s\n%s\n", sub, msg, keysUsage)
		return 2
	}
	wantArgs := map[string]int{"add": 0, "list": 0, "revoke": 1, "credit": 2}
	n, ok := wantArgs[sub]
	switch {
	case !ok:
		return usageErr("unknown subcommand")
	case len(pos) != n:
		return usageErr(fmt.Sprintf("want %d argument(s), got %d", n, len(pos)))
	case *data == "" && *database == "":
		return usageErr("--data is required")
	case sub == "add" && !flagSet(fs, "credits"):
		return usageErr("--credits is required (the starting balance, e.g. --credits 1000)")
	}

	var delta int64
	if sub == "credit" {
		d, err := strconv.ParseInt(pos[1], 10, 64)
		if err != nil {
			return usageErr(fmt.Sprintf("credits %q: not an integer", pos[1]))
		}
		delta = d
	}

	open := server.OpenExistingStore
	if sub == "add" {
		open = server.OpenStore // a new server's first key creates its database
	}
	st, err := open(ctx, *data, *database)
	if err != nil {
		fmt.Fprintf(stderr, "zimage keys: %v\n", err)
		return 1
	}
	defer st.Close()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "zimage keys %s: %v\n", sub, err)
		return 1
	}

	switch sub {
	case "add":
		key, info, err := st.AddKey(ctx, *name, *credits, *rate)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(stdout, key)
		fmt.Fprintf(stderr, "created %s (%q) with %d credits, %s; the key above is shown only once\n",
			info.ID, info.Name, info.Credits, rateText(info.RatePerMinute))
	case "list":
		keys, err := st.ListKeys(ctx)
		if err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tKEY\tCREDITS\tRESERVED\tRATE/MIN\tSTATE\tCREATED")
		for _, k := range keys {
			state := "active"
			if k.Revoked {
				state = "revoked"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s…\t%d\t%d\t%d\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.Credits, k.Reserved,
				k.RatePerMinute, state, k.CreatedAt.Format(time.DateTime))
		}
		_ = tw.Flush()
	case "revoke":
		id, err := st.ResolveKey(ctx, pos[0])
		if err != nil {
			return fail(err)
		}
		if err := st.RevokeKey(ctx, id); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "revoked %s\n", id)
	case "credit":
		id, err := st.ResolveKey(ctx, pos[0])
		if err != nil {
			return fail(err)
		}
		k, err := st.AddCredits(ctx, id, delta)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s %d\n", k.ID, k.Credits)
	}
	return 0
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func rateText(r int) string {
	if r == 0 {
		return "no rate limit"
	}
	return fmt.Sprintf("%d requests/minute", r)
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments, and returns the positional ones. A negative number
// ("credit KEY -5") is an argument, not a flag.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if _, err := strconv.ParseInt(args[0], 10, 64); err == nil {
			pos = append(pos, args[0])
			args = args[1:]
			continue
		}
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return pos, nil
}
