package builder

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// LockOptions control Lock.
type LockOptions struct {
	// DebDirs are searched for <package>_<version>_<arch>.deb files.
	DebDirs []string
	// Apt asks apt-cache for the candidate version of each package and
	// downloads it with apt-get download into WorkDir.
	Apt     bool
	WorkDir string
	// Root is the recipe folder (recipe-relative deb paths).
	Root *os.Root
}

// PinChange is one field of one input that Lock would change.
type PinChange struct {
	Input string `json:"input"`
	Field string `json:"field"` // version, deb, sha256, size
	Old   string `json:"old"`
	New   string `json:"new"`
}

func (c PinChange) String() string {
	return fmt.Sprintf("input %q: %s: %s -> %s", c.Input, c.Field, c.Old, c.New)
}

// Lock re-resolves the Debian package pins of r: for every input naming a
// package it finds the newest available version (DebDirs, and apt when
// o.Apt), extracts the member and reports every pin that differs. Inputs
// without a package are left alone.
func Lock(ctx context.Context, r *Recipe, o LockOptions) ([]PinChange, error) {
	var changes []PinChange
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(r.Inputs)) {
		in := r.Inputs[name]
		if in.Package == "" {
			continue
		}
		cs, err := lockOne(ctx, name, in, o)
		if err != nil {
			errs = append(errs, &InputError{name, "package", err})
			continue
		}
		changes = append(changes, cs...)
	}
	return changes, errors.Join(errs...)
}

func lockOne(ctx context.Context, name string, in Input, o LockOptions) ([]PinChange, error) {
	version, path, err := newestDeb(in.Package, o.DebDirs)
	if err != nil {
		return nil, err
	}
	if o.Apt {
		cand, err := aptCandidate(ctx, in.Package)
		if err != nil {
			return nil, err
		}
		if cand != "" && (version == "" || CompareDebVersions(cand, version) > 0) {
			if path, err = aptDownload(ctx, in.Package, cand, o.WorkDir); err != nil {
				return nil, err
			}
			version = cand
		}
	}
	if version == "" {
		return nil, fmt.Errorf("%w: no .deb of %s in %q and no apt candidate", ErrMissing, in.Package, o.DebDirs)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ms, err := debMembers(filepath.Base(path), raw, []string{in.Path})
	if err != nil {
		return nil, err
	}
	b := ms[strings.TrimPrefix(in.Path, "./")]
	h := sha256.Sum256(b)
	var cs []PinChange
	add := func(field, old, new string) {
		if old != new {
			cs = append(cs, PinChange{name, field, old, new})
		}
	}
	add("version", in.Version, version)
	if !strings.Contains(in.Deb, "://") {
		add("deb", in.Deb, filepath.ToSlash(filepath.Join(filepath.Dir(in.Deb), filepath.Base(path))))
	}
	add("sha256", in.SHA256, hex.EncodeToString(h[:]))
	add("size", strconv.FormatInt(in.Size, 10), strconv.Itoa(len(b)))
	return cs, nil
}

// newestDeb returns the highest version of pkg among <pkg>_<ver>_<arch>.deb
// files in dirs.
func newestDeb(pkg string, dirs []string) (version, path string, err error) {
	for _, d := range dirs {
		matches, err := filepath.Glob(filepath.Join(d, pkg+"_*.deb"))
		if err != nil {
			return "", "", err
		}
		for _, m := range matches {
			parts := strings.Split(strings.TrimSuffix(filepath.Base(m), ".deb"), "_")
			if len(parts) != 3 || parts[0] != pkg {
				continue
			}
			v, err := url.PathUnescape(parts[1])
			if err != nil {
				continue
			}
			if version == "" || CompareDebVersions(v, version) > 0 {
				version, path = v, m
			}
		}
	}
	return version, path, nil
}

func aptCandidate(ctx context.Context, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "policy", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache policy %s: %w", pkg, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Candidate:"); ok {
			v = strings.TrimSpace(v)
			if v == "(none)" {
				return "", nil
			}
			return v, nil
		}
	}
	return "", nil
}

func aptDownload(ctx context.Context, pkg, version, dir string) (string, error) {
	if dir == "" {
		return "", errors.New("apt download: no work directory")
	}
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg+"="+version)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s=%s: %w\n%s", pkg, version, err, out)
	}
	v, p, err := newestDeb(pkg, []string{dir})
	if err != nil || v != version {
		return "", fmt.Errorf("apt-get download %s=%s: downloaded file not found (%v)", pkg, version, err)
	}
	return p, nil
}

// ApplyPinChanges rewrites recipe text with the changes (exact quoted
// values; size by its key) and checks that the result still parses.
func ApplyPinChanges(text []byte, r *Recipe, cs []PinChange) ([]byte, error) {
	s := string(text)
	for _, c := range cs {
		switch c.Field {
		case "size":
			s = strings.ReplaceAll(s, "size = "+c.Old+"\n", "size = "+c.New+"\n")
		default:
			s = strings.ReplaceAll(s, strconv.Quote(c.Old), strconv.Quote(c.New))
		}
	}
	if _, err := ParseRecipe([]byte(s)); err != nil {
		return nil, fmt.Errorf("updated recipe: %w", err)
	}
	return []byte(s), nil
}

// CompareDebVersions compares two Debian versions as dpkg does
// (deb-version(7)): epoch numerically, then upstream version and revision
// with verrevcmp. It returns -1, 0 or 1.
func CompareDebVersions(a, b string) int {
	ea, ua, ra := splitDebVersion(a)
	eb, ub, rb := splitDebVersion(b)
	if ea != eb {
		if ea < eb {
			return -1
		}
		return 1
	}
	if c := verrevcmp(ua, ub); c != 0 {
		return c
	}
	return verrevcmp(ra, rb)
}

func splitDebVersion(v string) (epoch int, upstream, revision string) {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		epoch, _ = strconv.Atoi(v[:i])
		v = v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

func debOrder(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return 0
	case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
		return int(c)
	case c == '~':
		return -1
	}
	return int(c) + 256
}

func verrevcmp(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := 0, 0
			if i < len(a) && !isDigit(a[i]) {
				ac = debOrder(a[i])
			}
			if j < len(b) && !isDigit(b[j]) {
				bc = debOrder(b[j])
			}
			if ac != bc {
				return sign(ac - bc)
			}
			i, j = i+1, j+1
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		first := 0
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if first == 0 {
				first = int(a[i]) - int(b[j])
			}
			i, j = i+1, j+1
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if first != 0 {
			return sign(first)
		}
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}
