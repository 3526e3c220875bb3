package builder

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
)

// DefaultInit is the Go package built as /init when a recipe's [initrd]
// names none: the diagnostic init that prints a banner and powers off.
const DefaultInit = "github.com/mkcvm/mkcvm/cmd/mkcvm-init"

// MaxRecipeSize caps the size of a recipe file.
const MaxRecipeSize = 1 << 20

// ErrRecipe is wrapped by every recipe parse and validation error.
var ErrRecipe = errors.New("invalid recipe")

// RecipeError is one problem in a recipe: Where names the section or the
// input ("input \"kernel\"", "shape \"tpm\"", "initrd.file[1]"), Field the
// key, Reason what is wrong.
type RecipeError struct {
	Where, Field, Reason string
}

var _ error = (*RecipeError)(nil)

func (e *RecipeError) Error() string {
	var parts []string
	for _, s := range []string{e.Where, e.Field, e.Reason} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ": ")
}

// Is makes errors.Is(err, ErrRecipe) true for every RecipeError.
func (e *RecipeError) Is(target error) bool { return target == ErrRecipe }

// ParseRecipe decodes and validates a recipe. Unknown keys are errors. The
// result is a plain value; nothing is read or fetched. All problems found
// are reported together (errors.Join of *RecipeError).
func ParseRecipe(b []byte) (*Recipe, error) {
	if len(b) > MaxRecipeSize {
		return nil, &RecipeError{Reason: fmt.Sprintf("%d bytes exceeds the limit of %d", len(b), MaxRecipeSize)}
	}
	var r Recipe
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&r)
	if err != nil {
		if pe, ok := errors.AsType[toml.ParseError](err); ok {
			return nil, &RecipeError{Where: fmt.Sprintf("line %d", pe.Position.Line), Reason: pe.Message}
		}
		return nil, &RecipeError{Reason: err.Error()}
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, &RecipeError{Field: k.String(), Reason: "unknown key"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// LoadRecipe reads and parses the recipe file at path. The returned root
// gives access to the recipe's folder (recipe-relative file inputs); the
// caller closes it.
func LoadRecipe(path string) (*Recipe, []byte, *os.Root, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening recipe folder: %w", err)
	}
	b, err := readLimited(root, base, MaxRecipeSize)
	if err != nil {
		root.Close()
		return nil, nil, nil, fmt.Errorf("reading recipe %q: %w", path, err)
	}
	r, err := ParseRecipe(b)
	if err != nil {
		root.Close()
		return nil, nil, nil, fmt.Errorf("recipe %q: %w", path, err)
	}
	return r, b, root, nil
}

func readLimited(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("not a regular file")}
	}
	if st.Size() > limit {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("%d bytes exceeds the limit of %d", st.Size(), limit)}
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(f)
	return buf.Bytes(), err
}
