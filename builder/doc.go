// Package builder turns a recipe into artifacts: it fetches and verifies
// pinned inputs, assembles firmware, kernel and initrd, computes reference
// values with package measure and writes a manifest. It is the only package
// that performs build I/O.
package builder
