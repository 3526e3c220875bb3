package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/mkcvm/mkcvm/manifest"
)

// Fetcher obtains the bytes of one input from its source. The caller
// verifies size and sha256, so a Fetcher need not.
type Fetcher interface {
	Fetch(ctx context.Context, name string, in Input) (io.ReadCloser, error)
}

// Errors callers branch on.
var (
	// ErrMissing means an input is neither cached nor obtainable (offline,
	// or its source file is absent).
	ErrMissing = errors.New("input missing")
	// ErrPin means fetched bytes do not match the recipe's sha256 or size.
	ErrPin = errors.New("input does not match its pin")
)

// InputError names the input and the recipe field a problem is about.
type InputError struct {
	Input string // input name
	Field string // recipe key: sha256, size, file, url, deb, oci, path
	Err   error
}

func (e *InputError) Error() string { return fmt.Sprintf("input %q: %s: %v", e.Input, e.Field, e.Err) }
func (e *InputError) Unwrap() error { return e.Err }

// SourceFetcher fetches inputs from their recipe sources: files below the
// recipe folder, https URLs, members of .deb packages (found in the recipe
// folder or DebDirs, or downloaded), and OCI layers.
type SourceFetcher struct {
	Root    *os.Root     // the recipe folder
	DebDirs []string     // further folders holding .deb files
	Client  *http.Client // nil: http.DefaultClient
	Remote  []remote.Option
	// Wanted lists, per deb source, the member paths the recipe needs, so
	// one pass over a package extracts all of them.
	Wanted map[string][]string

	mu   sync.Mutex
	debs map[string]map[string][]byte
}

// NewSourceFetcher returns a fetcher for the inputs of r.
func NewSourceFetcher(r *Recipe, root *os.Root, debDirs []string) *SourceFetcher {
	f := &SourceFetcher{Root: root, DebDirs: debDirs, Wanted: map[string][]string{}}
	for _, name := range slices.Sorted(maps.Keys(r.Inputs)) {
		if in := r.Inputs[name]; in.Deb != "" {
			f.Wanted[in.Deb] = append(f.Wanted[in.Deb], in.Path)
		}
	}
	return f
}

func (f *SourceFetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	return http.DefaultClient
}

// Fetch implements Fetcher.
func (f *SourceFetcher) Fetch(ctx context.Context, name string, in Input) (io.ReadCloser, error) {
	switch {
	case in.File != "":
		if f.Root == nil {
			return nil, &InputError{name, "file", errors.New("no recipe folder")}
		}
		r, err := f.Root.Open(filepath.FromSlash(in.File))
		if err != nil {
			return nil, &InputError{name, "file", missingIfNotExist(err)}
		}
		return r, nil
	case in.URL != "":
		rc, err := f.get(ctx, in.URL)
		if err != nil {
			return nil, &InputError{name, "url", err}
		}
		return rc, nil
	case in.Deb != "":
		b, err := f.debMember(ctx, in)
		if err != nil {
			return nil, &InputError{name, "deb", err}
		}
		return io.NopCloser(strings.NewReader(string(b))), nil
	case in.OCI != "":
		rc, err := f.fetchOCI(ctx, in)
		if err != nil {
			return nil, &InputError{name, "oci", err}
		}
		return rc, nil
	}
	return nil, &InputError{name, "source", errors.New("no source")}
}

func missingIfNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrMissing, err)
	}
	return err
}

func (f *SourceFetcher) get(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err := fmt.Errorf("GET %s: %s", url, resp.Status)
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", ErrMissing, err)
		}
		return nil, err
	}
	return resp.Body, nil
}

// debMember returns one member of the deb named by in, extracting all
// wanted members of that deb on first use.
func (f *SourceFetcher) debMember(ctx context.Context, in Input) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.debs == nil {
		f.debs = map[string]map[string][]byte{}
	}
	ms, ok := f.debs[in.Deb]
	if !ok {
		raw, where, err := f.readDeb(ctx, in.Deb)
		if err != nil {
			return nil, err
		}
		want := f.Wanted[in.Deb]
		if !slices.Contains(want, in.Path) {
			want = append(slices.Clone(want), in.Path)
		}
		ms, err = debMembers(where, raw, want)
		if err != nil {
			return nil, err
		}
		f.debs[in.Deb] = ms
	}
	b, ok := ms[strings.TrimPrefix(in.Path, "./")]
	if !ok { // a member not listed in Wanted: one more pass
		raw, where, err := f.readDeb(ctx, in.Deb)
		if err != nil {
			return nil, err
		}
		one, err := debMembers(where, raw, []string{in.Path})
		if err != nil {
			return nil, err
		}
		b = one[strings.TrimPrefix(in.Path, "./")]
	}
	return b, nil
}

// readDeb finds a .deb: an https URL, a path below the recipe folder, or
// a file name in one of DebDirs.
func (f *SourceFetcher) readDeb(ctx context.Context, deb string) ([]byte, string, error) {
	if strings.Contains(deb, "://") {
		rc, err := f.get(ctx, deb)
		if err != nil {
			return nil, "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, 4<<30))
		return b, deb, err
	}
	if f.Root != nil {
		if b, err := readLimited(f.Root, filepath.FromSlash(deb), 4<<30); err == nil {
			return b, deb, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
	}
	for _, d := range f.DebDirs {
		p := filepath.Join(d, filepath.Base(deb))
		b, err := os.ReadFile(p)
		if err == nil {
			return b, filepath.Base(deb), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
	}
	return nil, "", fmt.Errorf("%w: %q is not in the recipe folder or the deb folders %q (set $MKCVM_DEBDIR or --debdir, run `make debs`, or re-pin with `mkcvm lock`)", ErrMissing, deb, f.DebDirs)
}

// Progress reports long-running work (fetches, compiles). nil disables.
type Progress interface {
	// Start begins a task; total is its size in bytes, 0 if unknown.
	Start(name string, total int64) Task
}

// Task is one unit of work reported to a Progress.
type Task interface {
	Add(n int)
	Done(err error)
}

type nopTask struct{}

func (nopTask) Add(int)    {}
func (nopTask) Done(error) {}

func start(p Progress, name string, total int64) Task {
	if p == nil {
		return nopTask{}
	}
	return p.Start(name, total)
}

type progressReader struct {
	r io.Reader
	t Task
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.t.Add(n)
	return n, err
}

// ResolveOptions control how inputs are obtained.
type ResolveOptions struct {
	Cache    *Cache
	Offline  bool    // never call Fetcher; missing cache entries are errors
	Fetcher  Fetcher // nil: nothing can be fetched
	Progress Progress
}

// InputStatus is the outcome of resolving one input.
type InputStatus struct {
	Name   string
	Input  Input
	Cached bool  // served from the cache
	Err    error // nil when the input is present and verified
}

// Resolve obtains every input of r, verifies its size and sha256 and
// stores it in the cache. It returns the bytes by input name, or an
// error joining one *InputError per failed input.
func Resolve(ctx context.Context, r *Recipe, o ResolveOptions) (map[string][]byte, []InputStatus, error) {
	out := map[string][]byte{}
	var sts []InputStatus
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(r.Inputs)) {
		in := r.Inputs[name]
		b, cached, err := resolveOne(ctx, name, in, o)
		sts = append(sts, InputStatus{Name: name, Input: in, Cached: cached, Err: err})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[name] = b
	}
	return out, sts, errors.Join(errs...)
}

func resolveOne(ctx context.Context, name string, in Input, o ResolveOptions) ([]byte, bool, error) {
	if b, ok := o.Cache.Get(in.SHA256, in.Size); ok {
		return b, true, nil
	}
	if o.Offline || o.Fetcher == nil {
		return nil, false, &InputError{name, "sha256", fmt.Errorf("%w: %s (%d bytes) is not in the cache and --offline is set; run `mkcvm inputs` online, or `mkcvm lock` if the pinned source is gone", ErrMissing, in.SHA256, in.Size)}
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	t := start(o.Progress, "fetch "+name, in.Size)
	b, err := fetchVerified(ctx, name, in, o.Fetcher, t)
	t.Done(err)
	if err != nil {
		return nil, false, err
	}
	if err := o.Cache.Put(in.SHA256, b); err != nil {
		return nil, false, fmt.Errorf("input %q: caching: %w", name, err)
	}
	return b, false, nil
}

func fetchVerified(ctx context.Context, name string, in Input, f Fetcher, t Task) ([]byte, error) {
	rc, err := f.Fetch(ctx, name, in)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(progressReader{rc, t}, in.Size+1))
	if err != nil {
		return nil, &InputError{name, sourceField(in), fmt.Errorf("reading: %w", err)}
	}
	if int64(len(b)) != in.Size {
		what := fmt.Sprintf("got %d bytes, want %d", len(b), in.Size)
		if int64(len(b)) > in.Size {
			what = fmt.Sprintf("got more than %d bytes", in.Size)
		} else {
			what += " (truncated?)"
		}
		return nil, &InputError{name, "size", fmt.Errorf("%w: %s", ErrPin, what)}
	}
	if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != in.SHA256 {
		return nil, &InputError{name, "sha256", fmt.Errorf("%w: got %x, want %s", ErrPin, h, in.SHA256)}
	}
	return b, nil
}

func sourceField(in Input) string {
	switch {
	case in.File != "":
		return "file"
	case in.URL != "":
		return "url"
	case in.Deb != "":
		return "deb"
	}
	return "oci"
}

// SourceString describes where an input came from, for the manifest.
func SourceString(in Input) string {
	switch {
	case in.File != "":
		return "file:" + in.File
	case in.URL != "":
		return in.URL
	case in.Deb != "":
		s := "deb:" + in.Deb + "!" + in.Path
		if in.Package != "" {
			s += " (" + in.Package + "=" + in.Version + ")"
		}
		return s
	case in.Layer != "":
		return "oci:" + in.OCI + "!" + in.Layer
	}
	return "oci:" + in.OCI + "!" + in.Path
}

// manifestInputs lists the inputs of r for the manifest, sorted by name.
func manifestInputs(r *Recipe) []manifest.Input {
	var out []manifest.Input
	for _, name := range slices.Sorted(maps.Keys(r.Inputs)) {
		in := r.Inputs[name]
		out = append(out, manifest.Input{Name: name, Source: SourceString(in), SHA256: in.SHA256, Size: in.Size})
	}
	return out
}
