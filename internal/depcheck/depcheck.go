// Package depcheck checks that mkcvm's packages keep their dependency
// direction: ovmf and measure stay pure, and the in-guest programs never pull
// in the build, publishing or CLI layers.
package depcheck

import (
	"fmt"
	"os/exec"
	"strings"
)

// Deps returns the transitive dependencies of the package pattern pkg, as
// `go list -deps` reports them.
func Deps(pkg string) ([]string, error) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("go list -deps %s: %w: %s", pkg, err, ee.Stderr)
		}
		return nil, fmt.Errorf("go list -deps %s: %w", pkg, err)
	}
	return strings.Fields(string(out)), nil
}

// Forbidden returns the dependencies of pkg that start with one of the
// forbidden import path prefixes.
func Forbidden(pkg string, prefixes []string) ([]string, error) {
	deps, err := Deps(pkg)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, d := range deps {
		for _, p := range prefixes {
			if d == p || strings.HasPrefix(d, p+"/") {
				bad = append(bad, d)
				break
			}
		}
	}
	return bad, nil
}
