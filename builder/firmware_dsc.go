package builder

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// DebianSourceControl is the part of a Debian source control file (.dsc)
// that unpacking needs: the package identity, the source format and the
// sha256 list of the other files. Format: Debian Policy 5.4 "Debian source
// control files -- .dsc" and deb822(5). The OpenPGP signature, if any, is
// stripped and not verified: mkcvm pins the .dsc by sha256 instead.
type DebianSourceControl struct {
	Source  string
	Version string
	Format  string
	Files   []SourceFile // from Checksums-Sha256, in file order
}

// maxDSCSize bounds the .dsc accepted (real ones are a few KiB).
const maxDSCSize = 1 << 20

// ParseDSC parses a .dsc file. input names it in errors.
func ParseDSC(input string, b []byte) (*DebianSourceControl, error) {
	if len(b) > maxDSCSize {
		return nil, fmt.Errorf("%s: %d bytes is larger than the %d byte limit", input, len(b), maxDSCSize)
	}
	body, first, err := stripPGPArmor(input, b)
	if err != nil {
		return nil, err
	}
	fields, err := parseDeb822(input, body, first)
	if err != nil {
		return nil, err
	}
	d := &DebianSourceControl{}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"Source", &d.Source}, {"Version", &d.Version}, {"Format", &d.Format}} {
		fl, ok := fields[f.name]
		if !ok {
			return nil, fmt.Errorf("%s: field %s missing", input, f.name)
		}
		*f.dst = strings.TrimSpace(fl.value)
		if *f.dst == "" {
			return nil, fmt.Errorf("%s: line %d: field %s is empty", input, fl.line, f.name)
		}
	}
	fl, ok := fields["Checksums-Sha256"]
	if !ok {
		return nil, fmt.Errorf("%s: field Checksums-Sha256 missing", input)
	}
	if d.Files, err = parseChecksums(input, fl); err != nil {
		return nil, err
	}
	return d, nil
}

// MarshalText encodes d as an unsigned .dsc holding the fields ParseDSC
// reads.
func (d *DebianSourceControl) MarshalText() ([]byte, error) {
	var b bytes.Buffer
	for _, kv := range [][2]string{{"Format", d.Format}, {"Source", d.Source}, {"Version", d.Version}} {
		if strings.ContainsAny(kv[1], "\n\r") || strings.TrimSpace(kv[1]) != kv[1] || kv[1] == "" {
			return nil, fmt.Errorf("encoding .dsc: field %s: %q is not a single-line value", kv[0], kv[1])
		}
		fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
	}
	b.WriteString("Checksums-Sha256:\n")
	for _, f := range d.Files {
		if !fileNameRE.MatchString(f.Name) || !sha256RE.MatchString(f.SHA256) || f.Size < 0 {
			return nil, fmt.Errorf("encoding .dsc: file %q: invalid entry", f.Name)
		}
		fmt.Fprintf(&b, " %s %d %s\n", f.SHA256, f.Size, f.Name)
	}
	return b.Bytes(), nil
}

type deb822Field struct {
	value string   // text after "Name:" on the first line
	cont  []string // continuation lines, leading blank removed
	line  int      // line number of the field name
}

// stripPGPArmor returns the signed text of a clearsigned message (RFC 4880
// section 7), dash-unescaped, or b itself when it is not signed. first is
// the 1-based line number of the first returned line.
func stripPGPArmor(input string, b []byte) (body []string, first int, err error) {
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	if len(lines) == 0 || lines[0] != "-----BEGIN PGP SIGNED MESSAGE-----" {
		return lines, 1, nil
	}
	i := 1
	for i < len(lines) && lines[i] != "" { // armor headers (Hash: ...)
		i++
	}
	if i == len(lines) {
		return nil, 0, fmt.Errorf("%s: line %d: PGP armor: no blank line after the headers", input, i)
	}
	start := i + 1
	for j := start; j < len(lines); j++ {
		if lines[j] == "-----BEGIN PGP SIGNATURE-----" {
			body = lines[start:j]
			for k, l := range body {
				body[k] = strings.TrimPrefix(l, "- ")
			}
			return body, start + 1, nil
		}
	}
	return nil, 0, fmt.Errorf("%s: PGP armor: no -----BEGIN PGP SIGNATURE----- line", input)
}

// parseDeb822 reads the first paragraph of a deb822 document (blank lines
// before it are skipped; text after it is ignored).
func parseDeb822(input string, lines []string, first int) (map[string]*deb822Field, error) {
	fields := map[string]*deb822Field{}
	var cur *deb822Field
	started := false
	for i, l := range lines {
		ln := first + i
		switch {
		case strings.TrimSpace(l) == "":
			if started {
				return fields, nil
			}
		case strings.HasPrefix(l, "#"):
			// comment line
		case l[0] == ' ' || l[0] == '\t':
			if cur == nil {
				return nil, fmt.Errorf("%s: line %d: continuation line without a field", input, ln)
			}
			cur.cont = append(cur.cont, strings.TrimSpace(l))
		default:
			name, value, ok := strings.Cut(l, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("%s: line %d: %q is not a \"Field: value\" line", input, ln, l)
			}
			if _, dup := fields[name]; dup {
				return nil, fmt.Errorf("%s: line %d: field %s repeated", input, ln, name)
			}
			cur = &deb822Field{value: value, line: ln}
			fields[name] = cur
			started = true
		}
	}
	if !started {
		return nil, fmt.Errorf("%s: no fields", input)
	}
	return fields, nil
}

// parseChecksums reads a Checksums-Sha256 field: one "sha256 size name"
// line per file.
func parseChecksums(input string, f *deb822Field) ([]SourceFile, error) {
	if strings.TrimSpace(f.value) != "" {
		return nil, fmt.Errorf("%s: line %d: Checksums-Sha256: unexpected text %q after the field name", input, f.line, f.value)
	}
	var files []SourceFile
	for i, l := range f.cont {
		ln := f.line + 1 + i
		parts := strings.Fields(l)
		if len(parts) != 3 {
			return nil, fmt.Errorf("%s: line %d: Checksums-Sha256: %q is not \"sha256 size name\"", input, ln, l)
		}
		size, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("%s: line %d: Checksums-Sha256: size %q is not a non-negative integer", input, ln, parts[1])
		}
		if !sha256RE.MatchString(parts[0]) {
			return nil, fmt.Errorf("%s: line %d: Checksums-Sha256: %q is not a lowercase sha256", input, ln, parts[0])
		}
		if !fileNameRE.MatchString(parts[2]) {
			return nil, fmt.Errorf("%s: line %d: Checksums-Sha256: %q is not a plain file name", input, ln, parts[2])
		}
		files = append(files, SourceFile{Name: parts[2], SHA256: parts[0], Size: size})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: line %d: Checksums-Sha256: no files", input, f.line)
	}
	return files, nil
}
