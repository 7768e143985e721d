package main

import (
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// The page and its modules are built into the binary: nothing is fetched
// from anywhere else at run time.
//
//go:embed web
var webFiles embed.FS

// contentSecurityPolicy allows scripts, styles and requests from this server
// only: no inline script or style, no eval, no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const tokenCookie = "checkpoint_token"

// newServeHandler is the whole web view: the page, its assets and the JSON
// API over src, behind the security checks.
func newServeHandler(src viewSource, o serveOptions) http.Handler {
	web, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	a := &api{src: src}
	mux := http.NewServeMux()
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(web)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, web, "index.html")
	})
	mux.HandleFunc("GET /api/experiments", a.experiments)
	mux.HandleFunc("GET /api/experiments/{name}", a.experiment)
	mux.HandleFunc("GET /api/experiments/{name}/failures", a.failures)
	mux.HandleFunc("GET /api/experiments/{name}/failures/list", a.failureList)
	mux.HandleFunc("GET /api/experiments/{name}/results", a.results)
	mux.HandleFunc("GET /api/compare", a.compare)
	return guard(o, mux)
}

// guard sets the security headers, refuses anything but GET and HEAD (the
// view is read-only), refuses foreign Host headers on a loopback server (a
// web page elsewhere cannot rebind its name to 127.0.0.1 and read the
// API), and checks the token on every request when there is one.
func guard(o serveOptions, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			jsonError(w, http.StatusMethodNotAllowed, "read-only: only GET and HEAD")
			return
		}
		if o.loopback && !loopbackHostHeader(r.Host) {
			jsonError(w, http.StatusForbidden, "this server answers to loopback names only")
			return
		}
		if o.token != "" {
			if q := r.URL.Query().Get("token"); q != "" && tokenEqual(q, o.token) && r.URL.Path == "/" {
				// Keep the token in a cookie the page's scripts cannot read,
				// and take it out of the address bar and history.
				http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: o.token, Path: "/",
					HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
				http.Redirect(w, r, "/", http.StatusSeeOther)
				return
			}
			if !requestToken(r, o.token) {
				jsonError(w, http.StatusUnauthorized, "a token is required: open the address printed by checkpoint serve")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// requestToken reports whether r carries the token, as the cookie, a bearer
// header or a ?token= parameter.
func requestToken(r *http.Request, token string) bool {
	if c, err := r.Cookie(tokenCookie); err == nil && tokenEqual(c.Value, token) {
		return true
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && tokenEqual(v, token) {
		return true
	}
	return tokenEqual(r.URL.Query().Get("token"), token)
}

// tokenEqual compares in constant time, so the time of a refusal does not
// tell how much of a guess was right.
func tokenEqual(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func loopbackHostHeader(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return isLoopbackHost(strings.Trim(host, "[]"))
}

type api struct{ src viewSource }

func (a *api) experiments(w http.ResponseWriter, r *http.Request) {
	rows, err := a.src.Experiments(r.Context())
	if rows == nil {
		rows = []experimentRow{}
	}
	reply(w, rows, err)
}

func (a *api) experiment(w http.ResponseWriter, r *http.Request) {
	d, err := a.src.Experiment(r.Context(), r.PathValue("name"))
	reply(w, d, err)
}

func (a *api) failures(w http.ResponseWriter, r *http.Request) {
	g, err := a.src.Failures(r.Context(), r.PathValue("name"))
	if g == nil {
		g = []failureGroup{}
	}
	reply(w, g, err)
}

func (a *api) failureList(w http.ResponseWriter, r *http.Request) {
	limit := intParam(r, "limit", 200)
	l, err := a.src.FailureList(r.Context(), r.PathValue("name"), r.URL.Query().Get("pattern"), min(max(limit, 1), 1000))
	if l == nil {
		l = []failure{}
	}
	reply(w, l, err)
}

func (a *api) results(w http.ResponseWriter, r *http.Request) {
	q := resultsQuery{
		Cursor: int64(intParam(r, "cursor", 0)),
		Limit:  intParam(r, "limit", 50),
		Search: r.URL.Query().Get("q"),
	}
	p, err := a.src.Results(r.Context(), r.PathValue("name"), q)
	reply(w, p, err)
}

func (a *api) compare(w http.ResponseWriter, r *http.Request) {
	names := r.URL.Query()["name"]
	if len(names) < 2 || len(names) > 8 {
		jsonError(w, http.StatusBadRequest, "compare takes 2 to 8 names: ?name=A&name=B")
		return
	}
	c, err := a.src.Compare(r.Context(), names)
	reply(w, c, err)
}

func intParam(r *http.Request, name string, def int) int {
	v, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil || v < 0 {
		return def
	}
	return v
}

// reply writes v as JSON. encoding/json escapes <, > and & in strings, so
// even a client that forgot to escape could not be handed live markup.
func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, errNotFound) {
			code = http.StatusNotFound
		}
		jsonError(w, code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
