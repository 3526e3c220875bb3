package builder_test

import (
	"fmt"

	"github.com/mkcvm/mkcvm/builder"
)

// A recipe parses into a plain value, with no side effects; every problem
// names its input or section and field.
func ExampleParseRecipe() {
	_, err := builder.ParseRecipe([]byte(`
name = "example"
kernel = "kernel"
[firmware]
image = "kernel"
[inputs.kernel]
file = "../vmlinuz"
sha256 = "d8808aa4ca188560da1e6d749dcb930c87a5fd8b11ebff1f3fa6d728af35203d"
size = 8222656
[initrd]
compression = "zstd"
`))
	fmt.Println(err)
	// Output: input "kernel": file: "../vmlinuz" escapes the recipe folder
}
