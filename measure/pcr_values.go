package measure

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// ParsePCRValues reads PCR values from text in any of these forms, one value
// per line:
//
//	tpm2_pcrread output:  "  sha256:" then "    4 : 0x93C6..."
//	mkcvm-init records:   "MKCVM-PCR sha256 4 93c6..."
//	mkcvm measure tpm:    "PCR4 93c6..." (bank from defaultBank)
//
// Other lines are ignored. input names the text in errors.
func ParsePCRValues(input, text string, defaultBank HashAlg) (map[HashAlg]map[uint32][]byte, error) {
	out := map[HashAlg]map[uint32][]byte{}
	bank := defaultBank
	put := func(line int, a HashAlg, idx, val string) error {
		n, err := strconv.ParseUint(strings.TrimSpace(idx), 10, 8)
		if err != nil || n > 23 {
			return fmt.Errorf("%s:%d: PCR index %q: want 0..23", input, line, idx)
		}
		v, err := decodeHexString(val)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", input, line, err)
		}
		if a.Size() != 0 && len(v) != a.Size() {
			return fmt.Errorf("%s:%d: PCR%d %s value is %d bytes, want %d", input, line, n, a, len(v), a.Size())
		}
		if out[a] == nil {
			out[a] = map[uint32][]byte{}
		}
		out[a][uint32(n)] = v
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		l := strings.TrimSpace(strings.TrimRight(sc.Text(), "\r"))
		f := strings.Fields(l)
		var err error
		switch {
		case len(f) == 1 && strings.HasSuffix(l, ":"):
			if a, e := ParseHashAlg(strings.TrimSuffix(l, ":")); e == nil {
				bank = a
			}
		case len(f) == 4 && f[0] == "MKCVM-PCR":
			a, e := ParseHashAlg(f[1])
			if e != nil {
				return nil, fmt.Errorf("%s:%d: %w", input, line, e)
			}
			err = put(line, a, f[2], f[3])
		case len(f) == 2 && strings.HasPrefix(f[0], "PCR"):
			err = put(line, bank, strings.TrimPrefix(f[0], "PCR"), f[1])
		case len(f) == 3 && f[1] == ":" && strings.HasPrefix(f[2], "0x"):
			err = put(line, bank, f[0], f[2])
		}
		if err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PCR values found", input)
	}
	return out, sc.Err()
}
