//go:build !unix

package builder

import "errors"

func lockBuildRoot(string) (func(), error) {
	return nil, errors.New("building firmware needs a Unix host")
}
