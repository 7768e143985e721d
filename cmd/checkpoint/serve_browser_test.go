package main

import (
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The web view in a real browser: Debian's chromium, headless, driven over
// the DevTools protocol. CI installs chromium (.ci/run); without it the
// test fails when CI=true and is skipped elsewhere.

func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed: the browser tests need it (apt-get install -y chromium)")
	}
	t.Skip("chromium not installed; CI installs it and runs this test")
	return ""
}

// screenshotDir is where the screenshots go: CHECKPOINT_SCREENSHOTS if set
// (to refresh the README's), else a folder in the system's temp dir that is
// kept after the test for people to look at.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("CHECKPOINT_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "checkpoint-serve-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // screenshots

	mu      sync.Mutex
	console []string // errors and warnings the page logged
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // CI runs as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	b := &browser{t: t, ctx: ctx, dir: screenshotDir(t)}
	t.Cleanup(func() { cancelT(); cancelB(); cancelA() })
	// Start the browser now, so that a browser that cannot start fails here.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium (%s): %v", exe, err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning {
				b.mu.Lock()
				b.console = append(b.console, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
				b.mu.Unlock()
			}
		}
	}()
	t.Logf("screenshots in %s", b.dir)
	return b
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// wait polls a JavaScript condition until it holds, for at most 20s.
func (b *browser) wait(what, expr string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// click clicks the element in one step of the page's own thread: rows of
// the live table are redrawn every second, so a node found by one protocol
// call may be gone by the next.
func (b *browser) click(sel string) {
	b.t.Helper()
	b.wait("to click "+sel, fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.focus(); e.click(); return true })()`, sel))
}

// clear empties an input as a user would (select all, delete), so that
// its input event fires.
func (b *browser) clear(sel string) {
	b.t.Helper()
	b.do("clear "+sel, chromedp.Focus(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](`document.activeElement.select()`),
		chromedp.SendKeys(chromedp.CSS(sel), "\b"))
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) consoleProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

func TestServeBrowser(t *testing.T) {
	dir := t.TempDir()
	makeFixture(t, dir)
	makeStepsFixture(t, dir)
	job := buildServeJob(t)
	startJob(t, job, dir, "live", "-n", "20000", "-every", "25ms")

	src, err := newFSSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	srv := httptest.NewServer(newServeHandler(src, serveOptions{loopback: true})) // 127.0.0.1
	defer srv.Close()

	b := newBrowser(t)

	// Experiments: one row per checkpoint, the Python sample's numbers.
	b.do("open the Experiments view", chromedp.Navigate(srv.URL+"/"))
	b.wait("the table", `document.querySelectorAll('#experiments tbody tr[data-name]').length === 10`)
	names := eval[[]string](b, `[...document.querySelectorAll('#experiments tbody tr[data-name]')].map(r => r.dataset.name)`)
	if got := strings.Join(names, ","); got != "eval,eval-a,eval-b,eval.generate,eval.judge,history,live,prep,sample,xss" {
		t.Fatalf("rows %s", got)
	}
	sample := eval[string](b, `document.querySelector('tr[data-name="sample"]').innerText`)
	for _, want := range []string{"4 / 6", "failed"} {
		if !strings.Contains(sample, want) {
			t.Errorf("sample row %q lacks %q", sample, want)
		}
	}
	// The sample's bar: 4 completed (green) then 1 failed (red) of 6, not a
	// bar filled by completed and failed alike.
	bar := eval[[]float64](b, `['.bar-done', '.bar-failed'].map(c => +document.querySelector('tr[data-name="sample"] svg.bar '+c).getAttribute('width'))`)
	if len(bar) != 2 || math.Abs(bar[0]-1000*4/6.0) > 0.5 || math.Abs(bar[1]-1000/6.0) > 0.5 {
		t.Errorf("sample's bar is %v of 1000, want 4/6 completed then 1/6 failed", bar)
	}
	cols := eval[[]string](b, `[...document.querySelectorAll('#experiments thead th[scope=col]')].map(th => th.dataset.key || '')`)
	for _, want := range []string{"name", "status", "completed", "failed", "rate", "eta_seconds", "last_updated", "model", "temperature", "accuracy", "f1"} {
		if !slices.Contains(cols, want) {
			t.Errorf("no column %s in %v", want, cols)
		}
	}
	if a := eval[string](b, `document.querySelector('tr[data-name="eval-a"]').innerText`); !strings.Contains(a, "gpt-4o") || !strings.Contains(a, "0.9280") {
		t.Errorf("eval-a row %q lacks its model and accuracy", a)
	}
	if l := eval[bool](b, `!!document.querySelector('label[for=filter-text]') && !!document.querySelector('label[for=filter-cond]')`); !l {
		t.Error("filter inputs have no labels")
	}

	// The running job: its count rises without a reload.
	b.do("mark the document", chromedp.Evaluate[chromedp.Void](`window.__sameDocument = true`))
	b.wait("the running badge", `document.querySelector('tr[data-name="live"] .badge')?.textContent === 'running'`)
	count := func() int {
		s := eval[string](b, `document.querySelector('tr[data-name="live"] .count').textContent`)
		n, err := strconv.Atoi(strings.ReplaceAll(strings.Fields(s)[0], ",", ""))
		if err != nil {
			t.Fatalf("live count %q: %v", s, err)
		}
		return n
	}
	before := count()
	b.wait("the live count to rise", fmt.Sprintf(`parseInt(document.querySelector('tr[data-name="live"] .count').textContent.replace(/,/g, '')) > %d`, before))
	if !eval[bool](b, `window.__sameDocument === true`) {
		t.Fatal("the page reloaded to show the new count")
	}
	b.wait("a rate for the running job", `/\/s$/.test(document.querySelector('tr[data-name="live"] td:nth-child(6)').textContent)`)
	t.Logf("live count rose from %d to %d without a reload", before, count())

	// Sort by a column, then back.
	b.click(`th[data-key="failed"] button`)
	b.click(`th[data-key="failed"] button`)
	b.wait("descending sort", `document.querySelector('th[data-key="failed"]').getAttribute('aria-sort') === 'descending'`)
	first := eval[string](b, `document.querySelector('#experiments tbody tr').dataset.name`)
	if first != "history" && first != "live" { // history has 65 failures; live grows
		t.Errorf("most failed first: %s", first)
	}
	b.screenshot("experiments.png")

	// Filters: text, then a condition.
	b.do("filter by text", chromedp.SendKeys(chromedp.CSS("#filter-text"), "eval"))
	b.wait("the eval rows", `document.querySelectorAll('#experiments tbody tr[data-name]').length === 5`)
	b.clear("#filter-text")
	for _, cond := range []string{"model = gpt-4o", "accuracy > 0.9", "failed > 5, total = 100, prompt = v2"} {
		b.clear("#filter-cond")
		b.do("filter by "+cond, chromedp.SendKeys(chromedp.CSS("#filter-cond"), cond))
		b.wait("eval-a alone for "+cond, `[...document.querySelectorAll('#experiments tbody tr[data-name]')].map(r => r.dataset.name).join() === 'eval-a'`)
	}
	b.screenshot("experiments-filtered.png")
	b.clear("#filter-cond")
	b.wait("all rows back", `document.querySelectorAll('#experiments tbody tr[data-name]').length === 10`)

	// One experiment: a chart drawn with data, failures, results.
	b.click(`tr[data-name="history"] a`)
	b.wait("the progress chart", `document.querySelectorAll('figure.chart svg .series polyline').length >= 2`)
	pts := eval[int](b, `Math.max(...[...document.querySelectorAll('figure.chart svg .series polyline')].map(p => p.points.length))`)
	if pts < 10 {
		t.Errorf("progress chart has %d points", pts)
	}
	b.wait("failure groups", `document.querySelectorAll('#failure-groups tbody tr').length === 1`)
	b.wait("results", `document.querySelectorAll('#results tbody tr').length === 25`)
	b.screenshot("experiment.png")
	b.click(`#failure-groups tbody button`)
	b.wait("the group's keys", `document.querySelectorAll('#failure-detail tbody tr').length === 65`)
	if f := eval[string](b, `document.activeElement.id`); f != "failure-detail-title" {
		t.Errorf("focus after opening a group is on %q", f)
	}
	firstKey := eval[string](b, `document.querySelector('#results tbody td.key').textContent`)
	b.click(`#results-next`)
	b.wait("page 2", `document.querySelector('#results-info').textContent.startsWith('Page 2')`)
	if info := eval[string](b, `document.querySelector('#results-info').textContent`); !strings.Contains(info, "read to byte") {
		t.Errorf("a folder's results pager says %q, want a byte position", info)
	}
	if k := eval[string](b, `document.querySelector('#results tbody td.key').textContent`); k == firstKey {
		t.Errorf("page 2 starts with the same key %s", k)
	}
	b.do("search", chromedp.SendKeys(chromedp.CSS("#results-search"), `"A3"`), chromedp.Click(chromedp.CSS(`#results-search + button, form[role=search] button`)))
	b.wait("search results", `document.querySelector('#results-info').textContent.startsWith('Page 1') && [...document.querySelectorAll('#results tbody pre')].every(p => p.textContent.includes('"A3"'))`)

	// A flow's steps.
	b.do("open the flow", chromedp.Navigate(srv.URL+"/#/exp/prep"))
	b.wait("the flow's steps", `document.querySelectorAll('#steps tbody tr').length === 3 && document.querySelectorAll('#steps tbody tr')[1].innerText.includes('failed')`)
	b.screenshot("flow.png")
	b.do("open the pipeline", chromedp.Navigate(srv.URL+"/#/exp/eval"))
	b.wait("the pipeline's steps", `document.querySelectorAll('#steps tbody tr').length === 2 && document.querySelector('#steps tbody tr').innerText.includes('3 / 4')`)

	// Metrics and run history of a library-made checkpoint.
	b.do("open eval-a", chromedp.Navigate(srv.URL+"/#/exp/eval-a"))
	b.wait("metric charts", `[...document.querySelectorAll('figure.chart figcaption')].some(c => c.textContent === 'accuracy') && document.querySelectorAll('figure.chart .series circle').length >= 10`)
	b.wait("the run history", `document.querySelectorAll('#runs tbody tr').length === 1 && document.querySelector('#runs tbody .badge').textContent === 'finished'`)
	b.screenshot("experiment-metrics.png")

	// A result and an error message holding markup show as text.
	b.do("open xss", chromedp.Navigate(srv.URL+"/#/exp/xss"))
	b.wait("the xss result", `document.querySelector('#results tbody pre')?.textContent.includes('<script>')`)
	b.wait("the xss failure", `document.querySelector('#failure-groups code')?.textContent.includes('<img src=x')`)
	if eval[bool](b, `window.__xss !== undefined || !!document.querySelector('main script, main img')`) {
		t.Fatal("a saved value became markup")
	}
	if k := eval[string](b, `document.querySelector('#results tbody td.key').textContent`); k != "<b>k</b>" {
		t.Errorf("key shown as %q", k)
	}

	// Compare two experiments.
	b.do("back to Experiments", chromedp.Navigate(srv.URL+"/#/"))
	b.wait("the table", `document.querySelectorAll('#experiments tbody tr[data-name]').length === 10`)
	b.click(`tr[data-name="eval-a"] input[type=checkbox]`)
	b.click(`tr[data-name="eval-b"] input[type=checkbox]`)
	b.wait("compare enabled", `!document.querySelector('#compare-selected').disabled`)
	b.click(`#compare-selected`)
	b.wait("the key comparison", `!!document.querySelector('#compare-keys')`)
	keys := eval[map[string]string](b, `Object.fromEntries([...document.querySelectorAll('#compare-keys tbody tr')].map(r => [r.cells[0].textContent, r.cells[1].textContent]))`)
	want := map[string]string{
		"Only in eval-a": "5", "Only in eval-b": "5", "In both": "95",
		"Completed in eval-a, failed in eval-b": "0", "Failed in eval-a, completed in eval-b": "5",
		"Failed in both": "5", "Same result": "77", "Different result": "8",
	}
	for k, v := range want {
		if keys[k] != v {
			t.Errorf("compare %q = %q, want %q (all: %v)", k, keys[k], v, keys)
		}
	}
	if f := eval[string](b, `document.querySelector('#compare-fields tbody tr').innerText`); !strings.Contains(f, "label") || !strings.Contains(f, `"fox"`) {
		t.Errorf("field diff row %q", f)
	}
	b.wait("the overlaid charts", `document.querySelectorAll('#main figure.chart svg .series polyline').length >= 4`)
	if d := eval[string](b, `[...document.querySelectorAll('#compare-params tr.differ th')].map(th => th.textContent).join()`); !strings.HasPrefix(d, "model") || strings.Contains(d, "prompt") {
		t.Errorf("parameters marked as differing: %q", d)
	}
	if m := eval[string](b, `document.querySelector('#compare-metrics tbody tr').innerText`); !strings.Contains(m, "accuracy") || !strings.Contains(m, "(-0.0500)") {
		t.Errorf("metric row %q lacks the delta", m)
	}
	b.screenshot("compare.png")

	// Records per minute of a short, bursty job: 100 records every 100 ms
	// for 2 s is 60,000 a minute throughout, not spikes between zeros (60
	// buckets of 32 ms each held a burst or nothing).
	b.do("rate a bursty job", chromedp.Evaluate[chromedp.Void](`import('/assets/chart.js').then((m) => {
		const pts = [];
		for (let burst = 0; burst < 20; burst++) for (let i = 0; i < 100; i++) pts.push({ x: 1e12 + burst * 100, y: burst * 100 + i + 1 });
		window.__rates = m.perMinute(pts).map((p) => p.y);
		const fig = m.lineChart({ title: 't', series: [{ name: 'n', points: [{ x: 1e12, y: 0 }, { x: 1e12 + 2500, y: 1 }] }] });
		window.__xlabels = [...fig.querySelectorAll('.grid text[text-anchor=middle]')].map((e) => e.textContent);
	})`))
	b.wait("the rates", `Array.isArray(window.__rates)`)
	rates := eval[[]float64](b, `window.__rates`)
	if len(rates) < 2 {
		t.Errorf("perMinute gave %d buckets for 2 s, want at least 2", len(rates))
	}
	// The time axis of a job of seconds: each label once, with its hour
	// ("17:16" alone reads as a time of day, not as minutes and seconds).
	xlabels := eval[[]string](b, `window.__xlabels`)
	if len(xlabels) < 2 || len(slices.Compact(slices.Clone(xlabels))) != len(xlabels) {
		t.Errorf("time axis of 2.5 s labelled %q, want at least two distinct labels", xlabels)
	}
	for _, l := range xlabels {
		if !regexp.MustCompile(`^\d\d:\d\d:\d\d$`).MatchString(l) {
			t.Errorf("time axis of 2.5 s labelled %q, want hh:mm:ss", xlabels)
			break
		}
	}
	for _, r := range rates {
		if r < 0.8*60000 || r > 1.2*60000 {
			t.Errorf("perMinute of a steady 60,000/min gave %v", rates)
			break
		}
	}

	if p := b.consoleProblems(); len(p) > 0 {
		t.Errorf("the page logged %d problems:\n%s", len(p), strings.Join(p, "\n"))
	}
}
