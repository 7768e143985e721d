package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

type failureJSON struct {
	Key      json.RawMessage `json:"key"`
	Error    string          `json:"error"`
	Attempts int             `json:"attempts"`
	Time     jsonTime        `json:"time"`
}

// samplesPerGroup is how many keys a group shows.
const samplesPerGroup = 3

func newErrorsCmd(e *env) *cobra.Command {
	var asJSON, list bool
	var grep string
	cmd := &cobra.Command{
		Use:   "errors NAME",
		Short: "Show the failed keys, grouped by message",
		Long: `errors prints the keys whose latest outcome is an error. By default they are
grouped by the first line of their message, with numbers, hex ids and quoted
values collapsed, so that 3,210 "429 too many requests (retry after 12s)"
show as one group with its count and sample keys; the most frequent group
comes first. --list prints
every failure instead, --grep keeps the messages a regular expression matches.
It never takes the lock.`,
		Example: `  checkpoint errors sample
  checkpoint errors sample --list --grep 'timeout'
  checkpoint errors sample --json | jq -r .key`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var re *regexp.Regexp
			if grep != "" {
				var err error
				if re, err = regexp.Compile(grep); err != nil {
					return usagef("--grep: %v", err)
				}
			}
			all, done, err := e.failures(cmd.Context(), args[0]) // a folder or a database (source_pg.go)
			if err != nil {
				return err
			}
			defer done()
			failures := func(yield func(checkpoint.Failure[string]) bool) {
				for f := range all {
					if re != nil && !re.MatchString(f.Error) {
						continue
					}
					if !yield(f) {
						return
					}
				}
			}
			switch {
			case asJSON:
				out := newJSONLines(e.stdout)
				for f := range failures {
					if err := out.put(failureJSON{json.RawMessage(f.Key), f.Error, f.Attempts, jsonTime(f.Time)}); err != nil {
						return err
					}
				}
				if err := out.flush(); err != nil {
					return err
				}
			case list:
				tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY\tATTEMPTS\tTIME\tERROR")
				for f := range failures {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", keyShown(f.Key), f.Attempts, f.Time.Local().Format("2006-01-02 15:04:05"), firstLine(f.Error))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			default:
				if err := printGroups(e, failures); err != nil {
					return err
				}
			}
			return done()
		},
	}
	cmd.Flags().BoolVar(&list, "list", false, "every failure: key, attempts, time, message")
	cmd.Flags().StringVar(&grep, "grep", "", "only failures whose message matches this regular expression (Go syntax)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per failed key: key, error, attempts, time")
	return cmd
}

type errorGroup struct {
	pattern string
	sample  string // the first message
	count   int
	keys    []string
	first   time.Time
	order   int
}

func printGroups(e *env, failures func(func(checkpoint.Failure[string]) bool)) error {
	groups := map[string]*errorGroup{}
	total := 0
	for f := range failures {
		total++
		first, _, _ := strings.Cut(f.Error, "\n")
		p := errorPattern(strings.TrimRight(first, "\r"))
		g := groups[p]
		if g == nil {
			g = &errorGroup{pattern: p, sample: firstLine(f.Error), first: f.Time, order: len(groups)}
			groups[p] = g
		}
		g.count++
		if len(g.keys) < samplesPerGroup {
			g.keys = append(g.keys, keyShown(f.Key))
		}
	}
	sorted := make([]*errorGroup, 0, len(groups))
	for _, g := range groups {
		sorted = append(sorted, g)
	}
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].count != sorted[j].count {
			return sorted[i].count > sorted[j].count
		}
		return sorted[i].order < sorted[j].order
	})
	w := e.stdout
	if total == 0 {
		fmt.Fprintln(w, "no failed keys")
		return nil
	}
	fmt.Fprintf(w, "%s in %s\n", plural(total, "failed key"), plural(len(sorted), "group"))
	for _, g := range sorted {
		fmt.Fprintf(w, "\n%7d  %s\n", g.count, oneLine(g.pattern))
		if !strings.HasPrefix(g.sample, g.pattern) {
			fmt.Fprintf(w, "         e.g. %s\n", oneLine(g.sample))
		}
		more := ""
		if g.count > len(g.keys) {
			more = fmt.Sprintf(" and %d more", g.count-len(g.keys))
		}
		fmt.Fprintf(w, "         keys %s%s\n", strings.Join(g.keys, ", "), more)
	}
	return nil
}

var (
	quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	uuidRE   = regexp.MustCompile(`(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)
	hexRE    = regexp.MustCompile(`(?i)\b0x[0-9a-f]+\b|\b[0-9a-f]*[0-9][0-9a-f]*[a-f][0-9a-f]*\b|\b[0-9a-f]*[a-f][0-9a-f]*[0-9][0-9a-f]*\b`)
	numberRE = regexp.MustCompile(`\d+(?:[.,]\d+)*`)
)

// errorPattern collapses what varies between messages of one kind: quoted
// values become "…", UUIDs and hex ids <id>, numbers N.
func errorPattern(msg string) string {
	p := quotedRE.ReplaceAllStringFunc(msg, func(q string) string { return q[:1] + "…" + q[:1] })
	p = uuidRE.ReplaceAllString(p, "<id>")
	p = hexRE.ReplaceAllStringFunc(p, func(h string) string {
		if len(h) < 6 { // short words like "beef" or "ab12" are not ids
			return h
		}
		return "<id>"
	})
	return numberRE.ReplaceAllString(p, "N")
}

// firstLine is a message's first line, with a note of how many follow: a
// stack trace in a table would bury the other rows. --json has it all.
func firstLine(s string) string {
	first, rest, multi := strings.Cut(strings.TrimRight(s, "\r\n"), "\n")
	if !multi {
		return oneLine(s)
	}
	return oneLine(strings.TrimRight(first, "\r")) + fmt.Sprintf(" (+%d lines)", strings.Count(rest, "\n")+1)
}

// oneLine keeps a message on one line of output.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", "⏎", "\n", "⏎", "\r", "⏎", "\t", " ").Replace(s)
}
