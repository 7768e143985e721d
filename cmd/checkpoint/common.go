package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// inspect opens a read-only view of the checkpoint name in e.dir, with an
// error that says where to look when there is none.
func (e *env) inspect(name string) (*checkpoint.View, error) {
	v, err := checkpoint.Inspect(e.dir, name)
	return v, e.explain(name, err)
}

// explain rewords the library's errors where the command knows better: a
// name that is not a checkpoint may be a pipeline or a flow, which ls lists
// too but which have no keys of their own.
func (e *env) explain(name string, err error) error {
	if !errors.Is(err, checkpoint.ErrNoCheckpoint) {
		return err
	}
	if steps, perr := checkpoint.ReadPipelineSteps(e.dir, name); perr == nil {
		names := make([]string, len(steps))
		for i, s := range steps {
			names[i] = name + "." + s
		}
		return fmt.Errorf("%q in %s is a pipeline, not a checkpoint: each of its steps is one (%s); checkpoint status %s shows them",
			name, e.dir, strings.Join(names, ", "), name)
	}
	if _, ferr := checkpoint.ReadFlowSteps(e.dir, name); ferr == nil {
		return fmt.Errorf("%q in %s is a flow: it has steps, not keys; checkpoint status %s shows them", name, e.dir, name)
	}
	return fmt.Errorf("no checkpoint %q in %s (checkpoint ls --dir %s lists them)", name, e.dir, e.dir)
}

// names lists the checkpoints in dir: every NAME with a NAME_results.jsonl,
// NAME_errors.jsonl or NAME_meta.json file, sorted.
func names(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no folder %s (use --dir to name the folder of the checkpoints)", dir)
		}
		return nil, err
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		for _, suffix := range []string{"_results.jsonl", "_errors.jsonl", "_meta.json"} {
			if name, ok := strings.CutSuffix(e.Name(), suffix); ok && name != "" {
				seen[name] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// keyShown is a key as people type it: "42" for both 42 and "42".
func keyShown(keyJSON string) string {
	return checkpoint.KeyText(keyJSON)
}

// jsonTime is a time for --json output: RFC 3339, or null when unknown.
type jsonTime time.Time

func (t jsonTime) MarshalJSON() ([]byte, error) {
	if time.Time(t).IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(time.Time(t))
}

// humanTime shows a time in local time with how long ago it was.
func humanTime(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05") + " (" + ago(now.Sub(t)) + ")"
}

func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "in the future"
	case d < 2*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// humanSize shows bytes with a binary unit.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// humanDuration shows a duration rounded for people: 1h02m, 3m10s, 12s.
func humanDuration(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()+0.5))
}

// jsonLines writes one JSON object per line.
type jsonLines struct {
	w   *bufio.Writer
	enc *json.Encoder
}

func newJSONLines(w io.Writer) *jsonLines {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &jsonLines{w: bw, enc: enc}
}

func (j *jsonLines) put(v any) error { return j.enc.Encode(v) }
func (j *jsonLines) flush() error    { return j.w.Flush() }

// relPath shows path relative to the folder the user named, if inside it.
func relPath(dir, path string) string {
	if rel, err := filepath.Rel(dir, path); err == nil && !strings.HasPrefix(rel, "..") {
		return filepath.Join(dir, rel)
	}
	return path
}

// plural is "1 key" or "2 keys".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
