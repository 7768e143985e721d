package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

func newRetryCmd(e *env) *cobra.Command {
	var all bool
	var grep string
	cmd := &cobra.Command{
		Use:   "retry NAME [KEY...]",
		Short: "Make failed keys eligible again, attempts counted from zero",
		Long: `retry removes the outcomes of failed keys, so the next run does them again,
even those out of attempts (WithMaxAttempts), with their attempts counted
from zero. Name the keys, or select them with --all or --grep (on the latest
error message). It takes the checkpoint's lock and refuses if a job runs.`,
		Example: `  checkpoint retry sample 5
  checkpoint retry sample --grep '429|timeout'
  checkpoint retry sample --all`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, keys := args[0], args[1:]
			var re *regexp.Regexp
			if grep != "" {
				var err error
				if re, err = regexp.Compile(grep); err != nil {
					return usagef("--grep: %v", err)
				}
			}
			if !all && re == nil && len(keys) == 0 {
				return usagef("retry: name keys, or use --all or --grep")
			}
			if all && (re != nil || len(keys) > 0) {
				return usagef("retry: --all retries every failed key; give no keys or --grep with it")
			}
			want := map[string]bool{}
			if len(keys) > 0 {
				// Every named key must be a failed key: check before changing
				// anything.
				for _, k := range keys {
					want[k] = true
				}
				if err := e.checkFailed(name, want); err != nil {
					return err
				}
			}
			n, err := checkpoint.Retry(e.dir, name, func(f checkpoint.Failure[string]) bool {
				if len(want) > 0 && !want[keyShown(f.Key)] {
					return false
				}
				return re == nil || re.MatchString(f.Error)
			})
			if err != nil {
				return e.explain(name, err)
			}
			fmt.Fprintf(e.stdout, "retry: %s of %s eligible again (the next run does them)\n", plural(n, "key"), name)
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "retry every failed key")
	cmd.Flags().StringVar(&grep, "grep", "", "retry the failed keys whose latest error matches this regular expression")
	return cmd
}

// checkFailed fails unless every key in want is a failed key of name.
func (e *env) checkFailed(name string, want map[string]bool) error {
	v, err := e.inspect(name)
	if err != nil {
		return err
	}
	defer v.Close()
	found := map[string]bool{}
	for f := range v.Failures() {
		if k := keyShown(f.Key); want[k] {
			found[k] = true
		}
	}
	if err := v.Err(); err != nil {
		return err
	}
	var missing []string
	for k := range want {
		if !found[k] {
			missing = append(missing, fmt.Sprintf("%q", k))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("retry: not a failed key of %s: %s (checkpoint errors %s --list shows them); nothing changed",
			name, strings.Join(missing, ", "), name)
	}
	return nil
}
