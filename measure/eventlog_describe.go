package measure

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/mkcvm/mkcvm/ovmf"
)

// DescribeEvent says in words what an event measures, decoding the event
// data of the common PC Client event types (PFP section 10.4). It never
// fails: data it cannot decode is summarized by size.
func DescribeEvent(e *Event) string {
	d := e.Data
	switch e.Type {
	case EvSeparator:
		if bytes.Equal(d, []byte{0, 0, 0, 0}) {
			return "separator"
		}
		if bytes.Equal(d, []byte{0xff, 0xff, 0xff, 0xff}) || bytes.Equal(d, []byte{1, 0, 0, 0}) {
			return "separator (error)"
		}
	case EvSCRTMVersion:
		return fmt.Sprintf("S-CRTM version %q", ucs2Decode(d))
	case EvEFIAction, EvAction:
		return fmt.Sprintf("action %q", d)
	case EvEFIPlatformFirmwareBlob:
		if len(d) == 16 {
			return fmt.Sprintf("firmware volume at 0x%x (0x%x bytes)", binary.LittleEndian.Uint64(d), binary.LittleEndian.Uint64(d[8:]))
		}
	case EvEFIVariableDriverConfig, EvEFIVariableBoot, EvEFIVariableBoot2, EvEFIVariableAuthority:
		if v, ok := parseVariableData(d); ok {
			return describeVariable(e.Type, v)
		}
	case EvEFIBootServicesApp, EvEFIBootServicesDriver, EvEFIRuntimeServicesDriver:
		if len(d) >= 32 {
			dpLen := binary.LittleEndian.Uint64(d[24:])
			path := "?"
			if dpLen <= uint64(len(d)-32) {
				path = DevicePathString(d[32 : 32+dpLen])
			}
			return fmt.Sprintf("PE image (%d bytes) loaded from %s", binary.LittleEndian.Uint64(d[8:]), path)
		}
	case EvEventTag:
		if len(d) >= 8 {
			id, n := binary.LittleEndian.Uint32(d), binary.LittleEndian.Uint32(d[4:])
			if uint64(n) <= uint64(len(d)-8) {
				desc := strings.TrimRight(string(d[8:8+n]), "\x00")
				switch id {
				case LinuxEventLoadOptions:
					return "kernel command line (LoadOptions, measured by the Linux EFI stub)"
				case LinuxEventInitrd:
					return "initrd (measured by the Linux EFI stub)"
				}
				return fmt.Sprintf("tagged event 0x%08x %q", id, desc)
			}
		}
	case EvIPL:
		return fmt.Sprintf("IPL %q", strings.TrimRight(string(d), "\x00"))
	case EvEFIGPTEvent:
		return "GPT partition table"
	case EvNoAction:
		return "not extended (informational)"
	}
	return fmt.Sprintf("%s with %d bytes of event data", e.Type, len(d))
}

func parseVariableData(d []byte) (UEFIVariable, bool) {
	if len(d) < 32 {
		return UEFIVariable{}, false
	}
	nameLen, dataLen := binary.LittleEndian.Uint64(d[16:]), binary.LittleEndian.Uint64(d[24:])
	if nameLen > uint64(len(d)) || dataLen > uint64(len(d)) || 32+2*nameLen+dataLen != uint64(len(d)) {
		return UEFIVariable{}, false
	}
	nameEnd := 32 + 2*int(nameLen)
	return UEFIVariable{Vendor: ovmf.GUID(d[:16]), Name: ucs2Decode(d[32:nameEnd]), Data: d[nameEnd:]}, true
}

func describeVariable(t EventType, v UEFIVariable) string {
	switch {
	case v.Name == "SecureBoot" && len(v.Data) == 1:
		return fmt.Sprintf("UEFI variable SecureBoot = %d", v.Data[0])
	case v.Name == "BootOrder":
		var s []string
		for i := 0; i+1 < len(v.Data); i += 2 {
			s = append(s, fmt.Sprintf("Boot%04X", binary.LittleEndian.Uint16(v.Data[i:])))
		}
		return "boot variable BootOrder = " + strings.Join(s, ",")
	case strings.HasPrefix(v.Name, "Boot") && len(v.Data) >= 6:
		fpLen := int(binary.LittleEndian.Uint16(v.Data[4:]))
		desc := ucs2Decode(v.Data[6:])
		descEnd := 6 + 2*(len([]rune(desc))+1)
		path := "?"
		if descEnd+fpLen <= len(v.Data) {
			path = DevicePathString(v.Data[descEnd : descEnd+fpLen])
		}
		return fmt.Sprintf("boot variable %s %q %s", v.Name, desc, path)
	}
	kind := "UEFI variable"
	if t == EvEFIVariableAuthority {
		kind = "Secure Boot authority from"
	}
	return fmt.Sprintf("%s %s (%d bytes, sha256 %x)", kind, v.Name, len(v.Data), AlgSHA256.Sum(v.Data)[:8])
}

// DevicePathString renders the device-path nodes this code meets in direct
// and disk boots (UEFI 2.10 section 10.3); other nodes print as
// type/subtype.
func DevicePathString(b []byte) string {
	var parts []string
	for len(b) >= 4 {
		typ, sub, n := b[0], b[1], int(binary.LittleEndian.Uint16(b[2:]))
		if n < 4 || n > len(b) {
			parts = append(parts, "<malformed>")
			break
		}
		body := b[4:n]
		switch {
		case typ == 0x7f && sub == 0xff:
			return strings.Join(parts, "/")
		case typ == 4 && sub == 3 && len(body) >= 16:
			parts = append(parts, "VenMedia("+ovmf.GUID(body[:16]).String()+")")
		case typ == 4 && sub == 4:
			parts = append(parts, "File("+ucs2Decode(body)+")")
		case typ == 4 && sub == 6 && len(body) == 16:
			parts = append(parts, "FvFile("+ovmf.GUID(body).String()+")")
		case typ == 4 && sub == 7 && len(body) == 16:
			parts = append(parts, "Fv("+ovmf.GUID(body).String()+")")
		default:
			parts = append(parts, fmt.Sprintf("Node(%d,%d)", typ, sub))
		}
		b = b[n:]
	}
	return strings.Join(parts, "/")
}
