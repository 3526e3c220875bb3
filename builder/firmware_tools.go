package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// PackageQuerier reports the installed version of a Debian package.
// installed is false when the package is not installed.
type PackageQuerier interface {
	InstalledVersion(ctx context.Context, pkg string) (version string, installed bool, err error)
}

// DpkgQuerier asks dpkg-query, the default PackageQuerier.
type DpkgQuerier struct{}

// InstalledVersion implements PackageQuerier with dpkg-query -W.
func (DpkgQuerier) InstalledVersion(ctx context.Context, pkg string) (string, bool, error) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		return "", false, fmt.Errorf("checking toolchain package %s: dpkg-query not found (a Debian host is required): %w", pkg, err)
	}
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Version}\n", pkg)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if err := cmd.Run(); err != nil {
		if _, ok := errors.AsType[*exec.ExitError](err); ok {
			return "", false, nil // dpkg-query: no packages found matching pkg
		}
		return "", false, fmt.Errorf("dpkg-query %s: %w", pkg, err)
	}
	// One line per architecture; multiarch packages (uuid-dev:amd64)
	// appear once on a single-arch host.
	for l := range strings.Lines(out.String()) {
		status, version, ok := strings.Cut(strings.TrimSuffix(l, "\n"), "\t")
		if ok && strings.HasPrefix(status, "ii") {
			return version, true, nil
		}
	}
	return "", false, nil
}

// checkTools compares every pinned toolchain package with what is
// installed and reports all differences at once, each naming the package
// and the apt-get command that installs the pinned version.
func checkTools(ctx context.Context, q PackageQuerier, tools []ToolPackage) error {
	var errs []error
	for _, t := range tools {
		v, ok, err := q.InstalledVersion(ctx, t.Package)
		switch {
		case err != nil:
			errs = append(errs, err)
		case !ok:
			errs = append(errs, fmt.Errorf("%w: package %s is not installed (recipe pins %s; apt-get install %s=%s)",
				ErrToolchain, t.Package, t.Version, t.Package, t.Version))
		case v != t.Version:
			errs = append(errs, fmt.Errorf("%w: package %s is version %s, recipe pins %s (apt-get install %s=%s)",
				ErrToolchain, t.Package, v, t.Version, t.Package, t.Version))
		}
	}
	return errors.Join(errs...)
}

// buildCmd prepares a build command that runs in dir with exactly env. The
// program is looked up in env's PATH, not the caller's, so the host PATH
// can neither hide a tool nor substitute another one.
func buildCmd(ctx context.Context, dir string, env []string, out io.Writer, name string, args ...string) *exec.Cmd {
	prog := name
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok && !strings.Contains(name, "/") {
			for d := range strings.SplitSeq(p, ":") {
				if st, err := os.Stat(filepath.Join(d, name)); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
					prog = filepath.Join(d, name)
					break
				}
			}
		}
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, out, out
	return cmd
}
