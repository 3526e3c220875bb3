package qemu

import (
	"encoding/base64"
	"encoding/hex"
)

func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
func decodeHex(s string) ([]byte, error) { return hex.DecodeString(s) }
