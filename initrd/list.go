package initrd

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Read decompresses (none, gzip or zstd, detected) and parses an initrd.
func Read(input string, b []byte) ([]Entry, string, error) {
	raw, comp, err := Decompress(input, b)
	if err != nil {
		return nil, "", err
	}
	es, err := Parse(input, raw)
	return es, comp, err
}

// ListLine formats one entry as "mode uid gid size sha256 path": mode in
// octal, sha256 of the data ("-" for directories and devices), symlinks
// followed by "-> target".
func ListLine(e Entry) string {
	sum := "-"
	if t := e.Mode & TypeMask; t == TypeReg || t == TypeSymlink {
		h := sha256.Sum256(e.Data)
		sum = hex.EncodeToString(h[:])
	}
	s := fmt.Sprintf("%06o %d %d %d %s %s", e.Mode, e.UID, e.GID, len(e.Data), sum, e.Path)
	switch e.Mode & TypeMask {
	case TypeSymlink:
		s += " -> " + string(e.Data)
	case TypeChar, TypeBlock:
		s += fmt.Sprintf(" (%d,%d)", e.RDevMajor, e.RDevMinor)
	}
	return s
}

// List writes one ListLine per entry.
func List(w io.Writer, es []Entry) error {
	for _, e := range es {
		if _, err := fmt.Fprintln(w, ListLine(e)); err != nil {
			return err
		}
	}
	return nil
}

// Check re-reads an initrd (any compression) and verifies that it holds
// exactly the canonical form of want, in canonical order, with canonical
// metadata for epoch. It reports every difference.
func Check(input string, archive []byte, epoch int64, want []Record) error {
	got, _, err := Read(input, archive)
	if err != nil {
		return err
	}
	canon, err := Canonical(want)
	if err != nil {
		return err
	}
	var errs []error
	if len(got) != len(canon) {
		errs = append(errs, fmt.Errorf("%s: %d entries, want %d", input, len(got), len(canon)))
	}
	for i := range min(len(got), len(canon)) {
		g, w := got[i], canon[i]
		if g.Path != w.Path || g.Mode != w.Mode || !slices.Equal(g.Data, w.Data) || g.RDevMajor != w.RDevMajor || g.RDevMinor != w.RDevMinor {
			errs = append(errs, fmt.Errorf("%s: entry %d: got %s, want %s", input, i, ListLine(g), ListLine(Entry{Record: w})))
		}
		if g.UID != 0 || g.GID != 0 || g.MTime != epoch || g.Ino != uint32(i) || g.DevMajor != 0 || g.DevMinor != 0 {
			errs = append(errs, fmt.Errorf("%s: entry %d (%s): metadata not canonical (ino %d uid %d gid %d mtime %d dev %d,%d)", input, i, g.Path, g.Ino, g.UID, g.GID, g.MTime, g.DevMajor, g.DevMinor))
		}
	}
	return errors.Join(errs...)
}
